"""Sources: the systems that send events, each with its write key."""
from __future__ import annotations

from profiles.models import Source


def source_get_or_create(*, name: str, replaces_identifiers: bool = False) -> Source:
    """The source of this name, created (with a new write key) on first use; for the product's own senders, such
    as rectifications and imports. `replaces_identifiers`: see Source."""
    source, _ = Source.objects.get_or_create(name=name, defaults={"replaces_identifiers": replaces_identifiers})
    if source.replaces_identifiers != replaces_identifiers:
        Source.objects.filter(pk=source.pk).update(replaces_identifiers=replaces_identifiers)
        source.replaces_identifiers = replaces_identifiers
    return source
