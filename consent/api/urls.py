from django.urls import path

from consent.api import views

urlpatterns = [
    path("profiles/<int:profile_id>/consent", views.ProfileConsentView.as_view(), name="api-profile-consent"),
    path("consents/", views.ConsentListView.as_view(), name="api-consents"),
]
