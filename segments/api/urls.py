from django.urls import path

from segments.api import destinations, views

urlpatterns = [
    path("segments/", views.SegmentListView.as_view(), name="api-segment-list"),
    path("segments/preview/", views.SegmentPreviewView.as_view(), name="api-segment-preview"),
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
]
