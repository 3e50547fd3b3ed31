from django.urls import path

from consent.api import privacy_views, views

urlpatterns = [
    path("profiles/<int:profile_id>/consent", views.ProfileConsentView.as_view(), name="api-profile-consent"),
    path("consents/", views.ConsentListView.as_view(), name="api-consents"),
    path("privacy-requests/", privacy_views.PrivacyRequestListView.as_view(), name="api-privacy-requests"),
    path("privacy-requests/<int:request_id>/", privacy_views.PrivacyRequestDetailView.as_view(),
         name="api-privacy-request"),
    path("privacy-requests/<int:request_id>/verify/", privacy_views.PrivacyRequestVerifyView.as_view(),
         name="api-privacy-request-verify"),
    path("privacy-requests/<int:request_id>/execute/", privacy_views.PrivacyRequestExecuteView.as_view(),
         name="api-privacy-request-execute"),
    path("privacy-requests/<int:request_id>/extend/", privacy_views.PrivacyRequestExtendView.as_view(),
         name="api-privacy-request-extend"),
    path("privacy-requests/<int:request_id>/reject/", privacy_views.PrivacyRequestRejectView.as_view(),
         name="api-privacy-request-reject"),
]
