from django.urls import path

from campaigns.api import views

urlpatterns = [
    path("placements/", views.PlacementListView.as_view(), name="api-placement-list"),
    path("placements/<int:placement_id>/", views.PlacementDetailView.as_view(), name="api-placement-detail"),
    path("campaigns/", views.CampaignListView.as_view(), name="api-campaign-list"),
    path("campaigns/<int:campaign_id>/", views.CampaignDetailView.as_view(), name="api-campaign-detail"),
    path("campaigns/<int:campaign_id>/activate/", views.CampaignActivateView.as_view(), name="api-campaign-activate"),
    path("campaigns/<int:campaign_id>/pause/", views.CampaignPauseView.as_view(), name="api-campaign-pause"),
    path("campaigns/<int:campaign_id>/end/", views.CampaignEndView.as_view(), name="api-campaign-end"),
    path("campaigns/<int:campaign_id>/results/", views.CampaignResultsView.as_view(), name="api-campaign-results"),
    path("campaign-settings/", views.ProgrammeSettingsView.as_view(), name="api-campaign-settings"),
]
