from django.urls import path

from segments.api import destinations

urlpatterns = [
    path("destinations/", destinations.DestinationListView.as_view(), name="api-destination-list"),
    path("destinations/<int:destination_id>/", destinations.DestinationDetailView.as_view(),
         name="api-destination-detail"),
    path("destinations/<int:destination_id>/deliveries/", destinations.DestinationDeliveriesView.as_view(),
         name="api-destination-deliveries"),
    path("deliveries/<int:delivery_id>/resend/", destinations.DeliveryResendView.as_view(),
         name="api-delivery-resend"),
]
