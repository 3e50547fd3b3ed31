"""URLs: collection API, REST API and its docs, admin, and the web screens."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cdp import health, timezones, views
from campaigns.decide import decide_view
from profiles.collect import collect

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    re_path(r"^v1/(?P<kind>identify|track|page|screen|group|alias|batch)/?$", collect, name="collect"),
    re_path(r"^v1/decide/?$", decide_view, name="decide"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("profiles.api.urls")),
    path("api/v1/", include("consent.api.urls")),
    path("api/v1/", include("segments.api.urls")),
    path("api/v1/", include("campaigns.api.urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("start/", views.landing, name="landing"),
    path("time-zone/", timezones.time_zone_set, name="time-zone"),
    path("profiles/", views.profile_list, name="profile-list"),
    path("profiles/export.csv", views.profile_export, name="profile-export"),
    path("profiles/<int:profile_id>/", views.profile_detail, name="profile-detail"),
    path("profiles/<int:profile_id>/consent/", views.profile_consent_record, name="profile-consent-record"),
    path("privacy/", include("consent.urls")),
    path("segments/", include("segments.urls")),
    path("campaigns/", include("campaigns.urls")),
]

handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
