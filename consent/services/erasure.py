"""Deletion requests carried out: the start (suppression, queued and set-aside events, the subject's other
requests) and the erasure itself, one chunk per step over every app's registered handler."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from consent.models import PrivacyRequest, RequestStatus
from consent.registry import handlers
from consent.services.background import erasure_queue
from consent.services.suppression import suppression_add
from consent.services.transitions import person, request_reduce, request_transition
from profiles import selectors as profile_selectors
from profiles.services.erasure import queued_events_discard, set_aside_events_discard
from profiles.services.identity import profiles_lock

# Rows per table per step: a step holds row locks of the subject's rows only, for well under a second.
ERASE_CHUNK = 20_000


def erasure_start(*, request: PrivacyRequest, profile_ids: list[int], actor, now: datetime) -> None:
    """Starts a verified deletion (inside the caller's transaction, which holds the request's lock): suppresses
    the subject's identifiers, drops their queued and set-aside events, reduces their other requests, and queues
    the erasure after commit."""
    held = profile_selectors.identifiers_held(profile_ids=profile_ids)
    suppressed = 0 if request.allow_recreation else suppression_add(identifiers=held, request_id=request.pk)
    named = held + [(i["type"], i["value"]) for i in request.identifiers]
    counts = {"queued_events": queued_events_discard(identifiers=named),
              "set_aside_events": set_aside_events_discard(identifiers=named),
              "other_requests_reduced": _reduce_other_requests(named, keep=request.pk)}
    request.progress = {"started_at": now.isoformat(), "profile_ids": profile_ids, "counts": counts,
                        "suppressed_identifiers": suppressed}
    request_transition(request, to=RequestStatus.IN_PROGRESS, action="execute", actor=person(actor))
    request.save(update_fields=["status", "progress"])
    erasure_queue(request_id=request.pk)


def privacy_erase_step(*, request_id: int, chunk: int = ERASE_CHUNK) -> bool:
    """Erases one chunk of a running deletion; returns True when the request is complete.

    Each step is one transaction and records its counts, so a worker that dies loses at most its own step.
    """
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request_id)
        if request.status != RequestStatus.IN_PROGRESS or not request.progress.get("started_at"):
            return request.status == RequestStatus.COMPLETED
        profile_ids = _follow_merges(request)
        counts = dict(request.progress.get("counts", {}))
        for handler in handlers():
            done = handler.erase(profile_ids, chunk)
            for table, n in done.items():
                counts[table] = counts.get(table, 0) + n
            if any(done.values()):
                # One handler per step: the ones marked last wait for the others to finish.
                request.progress = {**request.progress, "counts": counts}
                request.save(update_fields=["progress"])
                return False
        # The end, in one transaction under the profiles' locks: a pipeline batch that touched them has
        # committed (we waited for it), so every handler runs once more without a limit before they go.
        profiles_lock(profile_ids=profile_ids)
        for handler in handlers():
            for table, n in handler.erase(profile_ids, 10**9).items():
                counts[table] = counts.get(table, 0) + n
        for handler in handlers():
            if handler.finish is not None:
                for table, n in handler.finish(profile_ids).items():
                    counts[table] = counts.get(table, 0) + n
        now = timezone.now()
        request.receipt = {
            "request": request.pk, "kind": request.kind, "regime": request.regime, "profiles": len(profile_ids),
            "erased": counts, "suppressed_identifiers": request.progress.get("suppressed_identifiers", 0),
            "recreation_allowed": request.allow_recreation, "received_at": request.received_at.isoformat(),
            "started_at": request.progress["started_at"], "completed_at": now.isoformat(),
        }
        # The request named the subject; what is left of it says only what kinds of identifiers it named.
        request_reduce(request)
        # Profile ids are not personal data: they let a screen say which request erased a profile it asks for.
        request.progress = {"started_at": request.progress["started_at"], "counts": counts, "profile_ids": profile_ids}
        request.completed_at = now
        request_transition(request, to=RequestStatus.COMPLETED, action="erased",
                           details={"profiles": len(profile_ids), "erased": counts})
        request.save(update_fields=["status", "receipt", "identifiers", "changes", "notes", "progress",
                                    "completed_at"])
        return True


def _follow_merges(request: PrivacyRequest) -> list[int]:
    """The profiles to erase now. A pipeline batch already under way when the deletion started may have merged
    one of them into a profile outside the set (the identity graph says that is the same person): that
    profile, and everything merged into it, joins the set, and its identifiers are suppressed too."""
    profile_ids = request.progress["profile_ids"]
    joined: set[int] = set()
    for target in profile_selectors.profiles_merged_outside(profile_ids=profile_ids):
        survivor = profile_selectors.profile_get(profile_id=target)
        if survivor is not None:
            joined |= profile_selectors.profile_merged_ids(profile=survivor)
    joined -= set(profile_ids)
    if not joined:
        return profile_ids
    if not request.allow_recreation:
        suppression_add(identifiers=profile_selectors.identifiers_held(profile_ids=sorted(joined)),
                        request_id=request.pk)
    profile_ids = sorted(set(profile_ids) | joined)
    request.progress = {**request.progress, "profile_ids": profile_ids}
    request.save(update_fields=["progress"])
    return profile_ids


def _reduce_other_requests(named: list[tuple[str, str]], *, keep: int) -> int:
    """Other requests of the same person (an access request before the deletion, say) name them too: they keep
    their dates, status and receipt, and lose the identifiers, changes, notes and transition notes."""
    values = {value.strip().lower() for _, value in named}
    hits = [r for r in PrivacyRequest.objects.exclude(pk=keep).only("id", "kind", "identifiers", "changes", "notes",
                                                                     "progress")
            if any(str(i.get("value", "")).strip().lower() in values for i in r.identifiers)]
    for other in hits:
        request_reduce(other)
        other.save(update_fields=["identifiers", "changes", "notes", "progress"])
    return len(hits)
