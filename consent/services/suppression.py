"""The suppression list: keyed hashes of erased subjects' identifiers, and the pipeline gate that reads it."""
from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from django.conf import settings

from consent.models import SuppressedIdentifier
from profiles.messages import message_identifiers


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    # Derived from its own setting, so rotating SECRET_KEY for sessions does not forget who was erased.
    return hashlib.sha256(b"cdp-suppression\x00" + secret.encode()).digest()


def suppression_digest(kind: str, value: str) -> str:
    return hmac.new(_key(settings.SUPPRESSION_KEY), f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()


def suppression_add(*, identifiers: list[tuple[str, str]], request_id: int | None) -> int:
    """Adds identifiers (normalised as stored) to the list; idempotent. Returns how many were new."""
    rows = [SuppressedIdentifier(digest=suppression_digest(k, v), request_id=request_id) for k, v in identifiers]
    before = SuppressedIdentifier.objects.count()
    SuppressedIdentifier.objects.bulk_create(rows, ignore_conflicts=True)
    return SuppressedIdentifier.objects.count() - before


def identifiers_suppressed(*, identifiers: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these identifiers (normalised as stored), those on the list: one query while the list is empty, two
    after."""
    if not identifiers or not SuppressedIdentifier.objects.exists():
        return set()
    digests = {suppression_digest(kind, value): (kind, value) for kind, value in identifiers}
    hits = SuppressedIdentifier.objects.filter(digest__in=list(digests)).values_list("digest", flat=True)
    return {digests[digest] for digest in hits}


def suppressed_events(*, payloads: dict[int, dict]) -> set[int]:
    """The events (by id) that carry any suppressed identifier. One query per batch, none while the list is empty."""
    if not SuppressedIdentifier.objects.exists():
        return set()
    region = settings.PHONE_DEFAULT_REGION
    digests: dict[str, set[int]] = {}
    for event_id, payload in payloads.items():
        idents, link_only = message_identifiers(payload, default_region=region)
        for kind, value in idents + link_only:
            digests.setdefault(suppression_digest(kind, value), set()).add(event_id)
    hits = SuppressedIdentifier.objects.filter(digest__in=list(digests)).values_list("digest", flat=True)
    return {event_id for digest in hits for event_id in digests[digest]}
