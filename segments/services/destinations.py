"""Destinations: the URLs that receive signed segment enter and exit webhooks, and the secrets that sign them."""
from __future__ import annotations

from django.db import connection, transaction

from segments.models import Delivery, DeliveryAttempt, Destination

_UNCHANGED = object()


@transaction.atomic
def destination_create(*, name: str, url: str, secret: str, active: bool = True) -> Destination:
    """A new destination; segments send to it once they name it (Segment.destinations)."""
    return Destination.objects.create(name=name, url=url, secret=secret, active=active)


@transaction.atomic
def destination_update(*, destination_id: int, name=_UNCHANGED, url=_UNCHANGED, secret=_UNCHANGED,
                       active=_UNCHANGED) -> Destination:
    """Changes the fields given, the others stay. A new secret signs every try from now on, retries of earlier
    deliveries included; an inactive destination's due deliveries become dead letters when their turn comes.
    Raises Destination.DoesNotExist."""
    destination = Destination.objects.select_for_update().get(pk=destination_id)
    changed = {field: value for field, value in
               (("name", name), ("url", url), ("secret", secret), ("active", active)) if value is not _UNCHANGED}
    for field, value in changed.items():
        setattr(destination, field, value)
    if changed:
        destination.save(update_fields=list(changed))
    return destination


@transaction.atomic
def destination_delete(*, destination_id: int) -> None:
    """Deletes the destination with its deliveries and their attempts; segments stop naming it.
    Raises Destination.DoesNotExist."""
    destination = Destination.objects.select_for_update().get(pk=destination_id)
    # Set-based: the ORM's cascade would load every delivery of the destination into memory first.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {DeliveryAttempt._meta.db_table} a USING {Delivery._meta.db_table} d "
                       "WHERE a.delivery_id = d.id AND d.destination_id = %s", [destination_id])
        cursor.execute(f"DELETE FROM {Delivery._meta.db_table} WHERE destination_id = %s", [destination_id])
    destination.delete()
