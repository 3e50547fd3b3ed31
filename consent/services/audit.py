"""Writing the audit log, and checking its chain."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from consent.audit import GENESIS, entry_hash
from consent.models import AuditEntry
from profiles.common.locks import AUDIT_CHAIN, xact_lock


def _actor_name(actor) -> str:
    if isinstance(actor, str):
        return actor
    return actor.get_username() if getattr(actor, "is_authenticated", False) else "system"


@transaction.atomic
def audit_record(*, actor, action: str, target_type: str, target_id: int | None = None,
                 details: dict | None = None) -> AuditEntry:
    """Appends one entry. `details` must hold ids and counts only, never personal data."""
    # One lock for the whole log: each entry's hash needs the previous one. The log is written by people's actions
    # and once per pipeline batch that changed consent, so taking turns here costs nothing measurable.
    xact_lock(AUDIT_CHAIN)
    last = AuditEntry.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS
    # Microseconds survive the database round trip, so the stored entry hashes to the same value.
    at = timezone.now()
    fields = {"at": at, "actor": _actor_name(actor), "action": action, "target_type": target_type,
              "target_id": target_id, "details": details or {}}
    return AuditEntry.objects.create(prev_hash=last, hash=entry_hash(prev_hash=last, **fields), **fields)


def audit_verify(*, chunk: int = 10_000) -> tuple[int, AuditEntry | None]:
    """Walks the chain in order; returns how many entries it checked and the first broken one (or None)."""
    prev, checked, after = GENESIS, 0, 0
    while True:
        entries = list(AuditEntry.objects.filter(id__gt=after).order_by("id")[:chunk])
        if not entries:
            return checked, None
        for entry in entries:
            expected = entry_hash(prev_hash=prev, at=entry.at, actor=entry.actor, action=entry.action,
                                  target_type=entry.target_type, target_id=entry.target_id, details=entry.details)
            if entry.prev_hash != prev or entry.hash != expected:
                return checked, entry
            prev, checked, after = entry.hash, checked + 1, entry.id
