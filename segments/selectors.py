"""Segments' reads: destinations and their deliveries."""
from __future__ import annotations

from django.db.models import QuerySet

from segments.models import Delivery, Destination


def destinations_all() -> QuerySet[Destination]:
    return Destination.objects.order_by("id")


def destination_get(*, destination_id: int) -> Destination | None:
    return Destination.objects.filter(pk=destination_id).first()


def destination_deliveries(*, destination_id: int) -> QuerySet[Delivery]:
    """The destination's deliveries, newest first (the delivery_by_destination index), with their segment."""
    return (Delivery.objects.filter(destination_id=destination_id).select_related("segment")
            .order_by("-created_at", "-id"))
