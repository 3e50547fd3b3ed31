from django.urls import path, re_path

from profiles.api import views

urlpatterns = [
    path("profiles/", views.ProfileListView.as_view(), name="api-profile-list"),
    # Before the detail route so "lookup" is never read as an id.
    re_path(r"^profiles/lookup/?$", views.ProfileLookupView.as_view(), name="api-profile-lookup"),
    path("profiles/<int:profile_id>/", views.ProfileDetailView.as_view(), name="api-profile-detail"),
    path("profiles/<int:profile_id>/events/", views.ProfileEventsView.as_view(), name="api-profile-events"),
]
