from django.urls import path

from segments.api import destinations, learning, views

urlpatterns = [
    path("segments/", views.SegmentListView.as_view(), name="api-segment-list"),
    path("segments/preview/", views.SegmentPreviewView.as_view(), name="api-segment-preview"),
    path("segments/clustering/", learning.ClusteringListView.as_view(), name="api-clustering-list"),
    path("segments/clustering/<int:run_id>/", learning.ClusteringDetailView.as_view(), name="api-clustering-detail"),
    path("segments/<int:segment_id>/", views.SegmentDetailView.as_view(), name="api-segment-detail"),
    path("segments/<int:segment_id>/members/", views.SegmentMembersView.as_view(), name="api-segment-members"),
    path("segments/<int:segment_id>/refresh/", views.SegmentRefreshView.as_view(), name="api-segment-refresh"),
    path("segments/<int:segment_id>/history/", views.SegmentHistoryView.as_view(), name="api-segment-history"),
    path("segments/<int:segment_id>/static-members/", views.SegmentStaticMembersView.as_view(),
         name="api-segment-static-members"),
    path("profiles/<int:profile_id>/segments/", views.ProfileSegmentsView.as_view(), name="api-profile-segments"),
    path("destinations/", destinations.DestinationListView.as_view(), name="api-destination-list"),
    path("destinations/<int:destination_id>/", destinations.DestinationDetailView.as_view(),
         name="api-destination-detail"),
    path("destinations/<int:destination_id>/deliveries/", destinations.DestinationDeliveriesView.as_view(),
         name="api-destination-deliveries"),
    path("deliveries/<int:delivery_id>/resend/", destinations.DeliveryResendView.as_view(),
         name="api-delivery-resend"),
    path("models/", learning.ModelListView.as_view(), name="api-model-list"),
    path("models/<slug:key>/", learning.ModelDetailView.as_view(), name="api-model-detail"),
    path("models/<slug:key>/retrain/", learning.ModelRetrainView.as_view(), name="api-model-retrain"),
    path("items/", learning.ItemListView.as_view(), name="api-item-list"),
    path("items/bulk/", learning.ItemBulkView.as_view(), name="api-item-bulk"),
    # Product ids may hold slashes ("shoes/red-42"): `path`, with "similar/" matched first.
    path("items/<path:item_id>/similar/", learning.ItemSimilarView.as_view(), name="api-item-similar"),
    path("items/<path:item_id>/", learning.ItemDetailView.as_view(), name="api-item-detail"),
    path("profiles/<int:profile_id>/recommendations/", learning.ProfileRecommendationsView.as_view(),
         name="api-profile-recommendations"),
    path("recommendations/runs/", learning.RecommenderRunListView.as_view(), name="api-recommender-runs"),
]
