from django.urls import path

from segments import views

urlpatterns = [
    path("", views.segment_list, name="segment-list"),
    path("new/", views.segment_new, name="segment-new"),
    path("<int:segment_id>/", views.segment_detail, name="segment-detail"),
    path("<int:segment_id>/edit/", views.segment_edit, name="segment-edit"),
    path("<int:segment_id>/refresh/", views.segment_refresh, name="segment-refresh"),
    path("clustering/", views.clustering_list, name="segment-clustering"),
    path("clustering/<int:run_id>/", views.clustering_detail, name="segment-clustering-detail"),
    path("models/", views.model_list, name="segment-models"),
    path("models/recommendations/refresh/", views.recommendations_refresh, name="segment-recommendations-refresh"),
    path("models/<slug:key>/", views.model_detail, name="segment-model-detail"),
    path("models/<slug:key>/retrain/", views.model_retrain, name="segment-model-retrain"),
]
