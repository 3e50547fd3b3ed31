"""Sources: the systems that send events, each with its write key."""
from __future__ import annotations

from django.db import transaction

from profiles.models import Source


def source_get_or_create(*, name: str, replaces_identifiers: bool = False) -> Source:
    """The source of this name, created (with a new write key) on first use; for the product's own senders, such
    as rectifications and imports. `replaces_identifiers`: see Source."""
    source, _ = Source.objects.get_or_create(name=name, defaults={"replaces_identifiers": replaces_identifiers})
    if source.replaces_identifiers != replaces_identifiers:
        Source.objects.filter(pk=source.pk).update(replaces_identifiers=replaces_identifiers)
        source.replaces_identifiers = replaces_identifiers
    return source


@transaction.atomic
def sources_rotate_write_keys(*, source_ids: list[int]) -> list[Source]:
    """Gives each source a new write key, returned once on the sources. The old key stops working with the commit:
    the collection API reads the key from the database on every request and caches none."""
    sources = list(Source.objects.select_for_update().filter(pk__in=source_ids).order_by("pk"))
    for source in sources:
        source.write_key = ""  # Source.save draws a new one
        source.save(update_fields=["write_key"])
    return sources
