from django.urls import path

from campaigns import views

urlpatterns = [
    path("", views.campaign_list, name="campaign-list"),
    path("new/", views.campaign_new, name="campaign-new"),
    path("placements/new/", views.placement_new, name="campaign-placement-new"),
    path("<int:campaign_id>/", views.campaign_report, name="campaign-report"),
    path("<int:campaign_id>/edit/", views.campaign_edit, name="campaign-edit"),
    path("<int:campaign_id>/<str:action>/", views.campaign_transition, name="campaign-transition"),
]
