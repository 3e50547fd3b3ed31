"""Sources: the systems that send events, each with its write key."""
from __future__ import annotations

from profiles.models import Source


def source_get_or_create(*, name: str) -> Source:
    """The source of this name, created (with a new write key) on first use; for the product's own senders, such
    as rectifications and imports."""
    return Source.objects.get_or_create(name=name)[0]
