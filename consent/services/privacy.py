"""Data subject requests: create, verify, extend, reject, execute; the erasure itself, step by step.

Every change of status writes a PrivacyRequestTransition in the same transaction. Execution of a deletion
is a Celery task that erases one chunk per run and re-queues itself, so it is resumable and idempotent.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent.deadlines import deadlines_for, extended_due
from consent.models import (ConsentSource, PrivacyRequest, PrivacyRequestTransition, Purpose, RequestKind,
                            RequestStatus)
from consent.registry import handlers
from consent.services.audit import audit_record
from consent.services.ledger import ConsentChoice, consent_record
from consent.services.suppression import suppression_add
from profiles import selectors as profile_selectors
from profiles.models import Event, Identifier, PendingEvent, Profile, Source

RECTIFICATION_SOURCE = "Privacy requests"
OPEN = (RequestStatus.RECEIVED, RequestStatus.VERIFYING, RequestStatus.IN_PROGRESS)
# Rows per table per step: a step holds row locks of the subject's rows only, for well under a second.
ERASE_CHUNK = 20_000


class RequestStateError(Exception):
    """The request is not in a status that allows the action; `code` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _actor(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _transition(request: PrivacyRequest, *, to: str, action: str, actor=None, note: str = "",
                details: dict | None = None) -> None:
    PrivacyRequestTransition.objects.create(request=request, from_status=request.status, to_status=to,
                                            action=action, note=note, actor=actor, at=timezone.now())
    audit_record(actor=actor or "system", action=f"privacy_request.{action}", target_type="privacy_request",
                 target_id=request.pk, details={"kind": request.kind, "from": request.status, "to": to,
                                                **(details or {})})
    request.status = to


@transaction.atomic
def privacy_request_create(*, kind: str, regime: str, identifiers: list[dict], actor=None, notes: str = "",
                           allow_recreation: bool = False, received_at: datetime | None = None,
                           changes: dict | None = None) -> PrivacyRequest:
    """A new request, with its acknowledgement and due dates from the regime and kind."""
    if kind == RequestKind.RECTIFICATION and not changes:
        raise RequestStateError("changes_required", "A rectification request needs the traits to change.")
    received_at = received_at or timezone.now()
    dates = deadlines_for(kind=kind, regime=regime, received=received_at)
    request = PrivacyRequest.objects.create(
        kind=kind, regime=regime, identifiers=identifiers, received_at=received_at,
        acknowledge_by=dates.acknowledge_by, due_on=dates.due, notes=notes, allow_recreation=allow_recreation,
        changes=changes or {},
        assignee=_actor(actor))
    PrivacyRequestTransition.objects.create(request=request, to_status=request.status, action="create",
                                            actor=_actor(actor), at=received_at)
    audit_record(actor=actor or "api", action="privacy_request.create", target_type="privacy_request",
                 target_id=request.pk, details={"kind": kind, "regime": regime,
                                                "identifier_types": sorted({i["type"] for i in identifiers})})
    return request


def _locked(request_id: int) -> PrivacyRequest:
    return PrivacyRequest.objects.select_for_update().get(pk=request_id)


@transaction.atomic
def privacy_request_verify(*, request_id: int, actor=None, note: str = "") -> PrivacyRequest:
    """Records that the subject's identity is verified; the request is then in progress."""
    request = _locked(request_id)
    if request.status not in (RequestStatus.RECEIVED, RequestStatus.VERIFYING):
        raise RequestStateError("invalid_status", f"A {request.status} request cannot be verified.")
    request.verified_at = timezone.now()
    _transition(request, to=RequestStatus.IN_PROGRESS, action="verify", actor=_actor(actor), note=note)
    request.save(update_fields=["status", "verified_at"])
    return request


@transaction.atomic
def privacy_request_extend(*, request_id: int, reason: str, actor=None) -> PrivacyRequest:
    """Moves the due date by the one extension the regime allows; the reason is told to the subject."""
    request = _locked(request_id)
    if request.status not in OPEN:
        raise RequestStateError("invalid_status", f"A {request.status} request cannot be extended.")
    if request.extended_reason:
        raise RequestStateError("already_extended", "The request was already extended once.")
    if not deadlines_for(kind=request.kind, regime=request.regime, received=request.received_at).extendable:
        raise RequestStateError("not_extendable", "An opt-out of sale or sharing cannot be extended.")
    if not reason.strip():
        raise RequestStateError("reason_required", "An extension needs a reason.")
    if timezone.localdate() > request.due_on:
        # GDPR Art. 12(3) and 11 CCR 7021(b): the subject is told of the extension within the original period.
        raise RequestStateError("too_late", f"The request was due on {request.due_on}; it can no longer be extended.")
    request.due_on = extended_due(regime=request.regime, received=request.received_at, due=request.due_on)
    request.extended_reason = reason.strip()
    _transition(request, to=request.status, action="extend", actor=_actor(actor), note=reason.strip())
    request.save(update_fields=["due_on", "extended_reason", "status"])
    return request


@transaction.atomic
def privacy_request_reject(*, request_id: int, reason: str, actor=None) -> PrivacyRequest:
    request = _locked(request_id)
    if request.status not in OPEN:
        raise RequestStateError("invalid_status", f"A {request.status} request cannot be rejected.")
    if not reason.strip():
        raise RequestStateError("reason_required", "A rejection needs a reason.")
    request.rejected_reason = reason.strip()
    request.completed_at = timezone.now()
    _transition(request, to=RequestStatus.REJECTED, action="reject", actor=_actor(actor), note=reason.strip())
    request.save(update_fields=["status", "rejected_reason", "completed_at"])
    return request


def subject_profile_ids(*, identifiers: list[dict]) -> list[int]:
    """Every profile the identifiers resolve to through the identity graph, and every profile merged into them."""
    ids: set[int] = set()
    for item in identifiers:
        profile = profile_selectors.profile_lookup(identifier_type=item["type"], value=item["value"])
        if profile is not None:
            ids |= profile_selectors.profile_merged_ids(profile=profile)
    return sorted(ids)


@transaction.atomic
def privacy_request_execute(*, request_id: int, actor=None) -> PrivacyRequest:
    """Carries the request out: an opt-out at once; a deletion by queueing the erasure task after commit.

    Access and portability build their export in the background; restriction and rectification complete at
    once. Raises RequestStateError when the request is not verified (opt-outs need no verification).
    """
    from consent.tasks import erase_subject

    request = _locked(request_id)
    needs_verification = deadlines_for(kind=request.kind, regime=request.regime,
                                       received=request.received_at).verification_required
    ready = (RequestStatus.IN_PROGRESS,) if needs_verification else (RequestStatus.RECEIVED, RequestStatus.VERIFYING,
                                                                     RequestStatus.IN_PROGRESS)
    if request.status not in ready:
        raise RequestStateError("not_verified" if request.status in OPEN else "invalid_status",
                                f"A {request.status} request cannot be executed"
                                + (": verify the subject's identity first." if request.status in OPEN else "."))
    if request.progress.get("started_at"):
        return request  # already running: executing twice is harmless
    profile_ids = subject_profile_ids(identifiers=request.identifiers)
    now = timezone.now()
    if request.kind == RequestKind.OPT_OUT:
        live = Profile.objects.filter(id__in=profile_ids, merged_into__isnull=True).values_list("id", flat=True)
        consent_record(choices=[ConsentChoice(profile_id=pid, purpose="sale_sharing", granted=False,
                                              source=ConsentSource.API, recorded_at=now,
                                              reason=f"privacy request {request.pk}") for pid in live],
                       actor=actor)
        request.receipt = {"request": request.pk, "kind": request.kind, "profiles": len(profile_ids),
                           "completed_at": now.isoformat()}
        request.completed_at = now
        _transition(request, to=RequestStatus.COMPLETED, action="execute", actor=_actor(actor))
        request.save(update_fields=["status", "receipt", "completed_at"])
        return request
    if request.kind in (RequestKind.ACCESS, RequestKind.PORTABILITY):
        from consent.tasks import build_export

        request.progress = {"started_at": now.isoformat(), "profile_ids": profile_ids}
        _transition(request, to=RequestStatus.IN_PROGRESS, action="execute", actor=_actor(actor))
        request.save(update_fields=["status", "progress"])
        transaction.on_commit(lambda: build_export.delay(request.pk))
        return request
    if request.kind == RequestKind.RESTRICTION:
        # GDPR Art. 18: the data is kept but not used. Denying every purpose makes each enforcement selector
        # leave the profile out; lifting the restriction is a new choice, recorded like any other.
        live = list(Profile.objects.filter(id__in=profile_ids, merged_into__isnull=True).values_list("id", flat=True))
        keys = list(Purpose.objects.values_list("key", flat=True))
        consent_record(choices=[ConsentChoice(profile_id=pid, purpose=key, granted=False, source=ConsentSource.API,
                                              recorded_at=now, reason=f"restriction of processing, privacy request "
                                                                      f"{request.pk}")
                                for pid in live for key in keys], actor=actor)
        return _complete(request, actor, {"profiles": len(live)})
    if request.kind == RequestKind.RECTIFICATION:
        rectified = _rectify(request, profile_ids, now)
        return _complete(request, actor, {"profiles": rectified, "traits": sorted(request.changes)})
    held = list(Identifier.objects.filter(profile_id__in=profile_ids).values_list("type", "value"))
    suppressed = 0 if request.allow_recreation else suppression_add(identifiers=held, request_id=request.pk)
    named = held + [(i["type"], i["value"]) for i in request.identifiers]
    queued = _discard_queued(named)
    set_aside = _discard_set_aside(named)
    scrubbed = _scrub_other_requests(named, keep=request.pk)
    request.progress = {"started_at": now.isoformat(), "profile_ids": profile_ids,
                        "counts": {"queued_events": queued, "set_aside_events": set_aside,
                                   "other_requests_reduced": scrubbed},
                        "suppressed_identifiers": suppressed}
    _transition(request, to=RequestStatus.IN_PROGRESS, action="execute", actor=_actor(actor))
    request.save(update_fields=["status", "progress"])
    transaction.on_commit(lambda: erase_subject.delay(request.pk))
    return request


def _complete(request: PrivacyRequest, actor, details: dict) -> PrivacyRequest:
    now = timezone.now()
    request.receipt = {"request": request.pk, "kind": request.kind, **details, "completed_at": now.isoformat()}
    request.completed_at = now
    _transition(request, to=RequestStatus.COMPLETED, action="execute", actor=_actor(actor), details=details)
    request.save(update_fields=["status", "receipt", "completed_at"])
    return request


def _rectify(request: PrivacyRequest, profile_ids: list[int], now) -> int:
    """Sets the corrected traits with an identify message per live profile, accepted and processed by the same
    code as any collected message, so trait history and identity rules apply as always."""
    from profiles.services.ingest import events_accept

    source, _ = Source.objects.get_or_create(name=RECTIFICATION_SOURCE)
    # One identifier per live profile to address it by: its user id, else its first anonymous id.
    held = Identifier.objects.filter(profile_id__in=profile_ids, profile__merged_into__isnull=True,
                                     type__in=("user_id", "anonymous_id")).order_by("-type", "first_seen", "id")
    address: dict[int, tuple[str, str]] = {}
    for pid, kind, value in held.values_list("profile_id", "type", "value"):
        address.setdefault(pid, (kind, value))
    messages = [{"type": "identify", "userId" if kind == "user_id" else "anonymousId": value,
                 "traits": request.changes, "messageId": f"rectification-{request.pk}-{pid}",
                 "timestamp": now.isoformat()} for pid, (kind, value) in sorted(address.items())]
    events_accept(source=source, messages=messages)
    return len(messages)


def privacy_erase_step(*, request_id: int, chunk: int = ERASE_CHUNK) -> bool:
    """Erases one chunk of a running deletion; returns True when the request is complete.

    Each step is one transaction and records its counts, so a worker that dies loses at most its own step.
    """
    with transaction.atomic():
        request = _locked(request_id)
        if request.status != RequestStatus.IN_PROGRESS or not request.progress.get("started_at"):
            return request.status == RequestStatus.COMPLETED
        profile_ids = _follow_merges(request)
        counts = dict(request.progress.get("counts", {}))
        erased_any = False
        for handler in handlers():
            done = handler.erase(profile_ids, chunk)
            for table, n in done.items():
                counts[table] = counts.get(table, 0) + n
            if any(done.values()):
                erased_any = True
                break  # one handler per step: the ones marked last wait for the others to finish
        if erased_any:
            request.progress = {**request.progress, "counts": counts}
            request.save(update_fields=["progress"])
            return False
        # The end, in one transaction under the profiles' locks: a pipeline batch that touched them has
        # committed (we waited for it), so every handler runs once more without a limit before they go.
        list(Profile.objects.select_for_update().filter(id__in=profile_ids).values_list("id", flat=True))
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
        _reduce(request)
        PrivacyRequestTransition.objects.filter(request=request).update(note="")
        request.progress = {"started_at": request.progress["started_at"], "counts": counts}
        request.completed_at = now
        _transition(request, to=RequestStatus.COMPLETED, action="erased",
                    details={"profiles": len(profile_ids), "erased": counts})
        request.save(update_fields=["status", "receipt", "identifiers", "changes", "notes", "progress",
                                    "completed_at"])
        return True


def privacy_requests_unfinished(*, older_than: timedelta = timedelta(minutes=10)) -> tuple[list[int], list[int]]:
    """Started erasures and exports not completed after `older_than`: (deletion ids, access/portability ids)."""
    started = PrivacyRequest.objects.filter(status=RequestStatus.IN_PROGRESS, progress__has_key="started_at",
                                            transitions__action="execute",
                                            transitions__at__lte=timezone.now() - older_than).distinct()
    erasing = list(started.filter(kind=RequestKind.DELETION).values_list("id", flat=True))
    exporting = list(started.filter(kind__in=[RequestKind.ACCESS, RequestKind.PORTABILITY],
                                    exports__isnull=True).values_list("id", flat=True))
    return erasing, exporting


def _follow_merges(request: PrivacyRequest) -> list[int]:
    """The profiles to erase now. A pipeline batch already under way when the deletion started may have merged
    one of them into a profile outside the set (the identity graph says that is the same person): that
    profile, and everything merged into it, joins the set, and its identifiers are suppressed too."""
    profile_ids = request.progress["profile_ids"]
    targets = set(Profile.objects.filter(id__in=profile_ids, merged_into__isnull=False)
                  .exclude(merged_into_id__in=profile_ids).values_list("merged_into_id", flat=True))
    joined: set[int] = set()
    for target in targets:
        survivor = profile_selectors.profile_get(profile_id=target)
        if survivor is not None:
            joined |= profile_selectors.profile_merged_ids(profile=survivor)
    joined -= set(profile_ids)
    if not joined:
        return profile_ids
    if not request.allow_recreation:
        suppression_add(identifiers=list(Identifier.objects.filter(profile_id__in=joined).values_list(
            "type", "value")), request_id=request.pk)
    profile_ids = sorted(set(profile_ids) | joined)
    request.progress = {**request.progress, "profile_ids": profile_ids}
    request.save(update_fields=["progress"])
    return profile_ids


def _reduce(request: PrivacyRequest) -> None:
    request.identifiers = [{"type": item["type"]} for item in request.identifiers]
    request.changes = {key: None for key in request.changes}
    request.notes = ""


def _scrub_other_requests(named: list[tuple[str, str]], *, keep: int) -> int:
    """Other requests of the same person (an access request before the deletion, say) name them too: they keep
    their dates, status and receipt, and lose the identifiers, changes, notes and transition notes."""
    values = {value.strip().lower() for _, value in named}
    hits = [r for r in PrivacyRequest.objects.exclude(pk=keep).only("id", "identifiers", "changes", "notes")
            if any(str(i.get("value", "")).strip().lower() in values for i in r.identifiers)]
    for other in hits:
        _reduce(other)
        other.save(update_fields=["identifiers", "changes", "notes"])
    PrivacyRequestTransition.objects.filter(request__in=hits).update(note="")
    return len(hits)


def _discard_set_aside(named: list[tuple[str, str]]) -> int:
    """Events the pipeline set aside hold no profile, so erasure by profile misses them: found by their ids."""
    user_ids = {v for t, v in named if t == "user_id"}
    anonymous_ids = {v for t, v in named if t == "anonymous_id"}
    if not user_ids and not anonymous_ids:
        return 0
    orphans = Event.objects.filter(profile__isnull=True).filter(Q(user_id__in=user_ids) |
                                                                 Q(anonymous_id__in=anonymous_ids))
    return orphans.delete()[0]


def _discard_queued(identifiers: list[tuple[str, str]]) -> int:
    """Deletes the subject's events still waiting in the queue, found by their user and anonymous ids (later
    ones are dropped by the suppression gate, or, when re-creation is allowed, start a new profile)."""
    user_ids = {v for t, v in identifiers if t == "user_id"}
    anonymous_ids = {v for t, v in identifiers if t == "anonymous_id"}
    deleted, _ = PendingEvent.objects.filter(Q(user_id__in=user_ids) | Q(anonymous_id__in=anonymous_ids)).delete()
    return deleted
