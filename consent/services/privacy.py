"""Data subject requests: create, verify, extend, reject, execute.

Every change of status writes a PrivacyRequestTransition in the same transaction. A deletion is carried out by
consent.services.erasure, an export by consent.services.exports, both in Celery tasks.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from consent.deadlines import deadlines_for, extended_due
from consent.models import ConsentSource, PrivacyRequest, PrivacyRequestTransition, Purpose, RequestKind, RequestStatus
from consent.selectors import privacy_officer_ids, profile_traits, subject_profile_ids
from consent.services.audit import audit_record
from consent.services.background import export_queue
from consent.services.erasure import erasure_start
from consent.services.ledger import ConsentChoice, consent_record
from consent.services.transitions import RequestStateError, person, request_transition
from profiles import selectors as profile_selectors
from profiles.selectors import identifier_normalise
from profiles.services.ingest import events_accept
from profiles.services.sources import source_get_or_create

RECTIFICATION_SOURCE = "Privacy requests"
RECTIFICATION_MESSAGE = "rectification-{request}-{profile}"
OPEN = (RequestStatus.RECEIVED, RequestStatus.VERIFYING, RequestStatus.IN_PROGRESS)
# What a privacy officer may do to a request, in the order its page offers them.
ACTIONS = ("verify", "execute", "extend", "reject", "assign")
_DONE = {"verify": "verified", "execute": "executed", "extend": "extended", "reject": "rejected",
         "assign": "assigned"}


def privacy_today() -> date:
    """Today in the platform's time zone (TIME_ZONE): due dates are dates there, whoever looks at them and
    whatever time zone their screen shows."""
    return timezone.localdate(timezone=timezone.get_default_timezone())


def privacy_request_refusal(*, request: PrivacyRequest, action: str, today: date | None = None
                            ) -> RequestStateError | None:
    """Why `action` does not apply to the request as it stands, or None when it does.

    The one rule the services (which raise it) and the screens (which offer only the actions that apply)
    share, from the request's status and its regime's deadlines. A reason an action needs is checked by the
    action's service.
    """
    status = request.get_status_display().lower()
    if request.status not in OPEN:
        return RequestStateError("invalid_status", f"A {status} request cannot be {_DONE[action]}.")
    if action == "assign":
        return None
    if request.progress.get("started_at"):
        return RequestStateError("already_running", "The request is being carried out; it can no longer be "
                                                    f"{_DONE[action]}.")
    if action != "reject" and any(item.get("value") is None for item in request.identifiers):
        # Another request erased the subject and reduced this one: nothing is left to carry it out on.
        return RequestStateError("subject_erased", "The subject was erased by another request: this one can only "
                                                   "be rejected, with that reason.")
    dates = deadlines_for(kind=request.kind, regime=request.regime, received=request.received_at)
    if action == "verify":
        if not dates.verification_required:
            # 11 CCR 7026(b): a business may not require a verifiable request to opt out of sale or sharing.
            return RequestStateError("verification_not_required",
                                     "An opt-out of sale or sharing is carried out without identity verification.")
        if request.status == RequestStatus.IN_PROGRESS:
            return RequestStateError("invalid_status", "The subject's identity is verified already.")
    if action == "execute" and dates.verification_required and request.status != RequestStatus.IN_PROGRESS:
        return RequestStateError("not_verified",
                                 f"A {status} request cannot be executed: verify the subject's identity first.")
    if action == "extend":
        if request.extended_reason:
            return RequestStateError("already_extended", "The request was already extended once.")
        if not dates.extendable:
            return RequestStateError("not_extendable", "An opt-out of sale or sharing cannot be extended.")
        if (today or privacy_today()) > request.due_on:
            # GDPR Art. 12(3) and 11 CCR 7021(b): the subject is told of the extension within the original period.
            return RequestStateError("too_late",
                                     f"The request was due on {request.due_on}; it can no longer be extended.")
    return None


def privacy_request_actions(*, request: PrivacyRequest, today: date | None = None) -> list[str]:
    """The actions that apply to the request now (what its page offers)."""
    today = today or privacy_today()
    return [action for action in ACTIONS if privacy_request_refusal(request=request, action=action, today=today) is None]


def _refuse(request: PrivacyRequest, action: str) -> None:
    refusal = privacy_request_refusal(request=request, action=action)
    if refusal is not None:
        raise refusal


@transaction.atomic
def privacy_request_create(*, kind: str, regime: str, identifiers: list[dict], actor=None, notes: str = "",
                           allow_recreation: bool = False, received_at: datetime | None = None,
                           changes: dict | None = None) -> PrivacyRequest:
    """A new request, with its acknowledgement and due dates from the regime and kind."""
    if kind == RequestKind.RECTIFICATION and not changes:
        raise RequestStateError("changes_required", "A rectification request needs the traits to change.")
    received_at = received_at or timezone.now()
    dates = deadlines_for(kind=kind, regime=regime, received=received_at)
    # Stored as the identity graph stores them (emails lower-cased, phones in E.164), so the queue's search and
    # an erasure's reduction of the subject's other requests find them whatever way they were typed.
    identifiers = [{**item, "value": identifier_normalise(item["type"], str(item["value"])) or str(item["value"])}
                   for item in identifiers]
    request = PrivacyRequest.objects.create(
        kind=kind, regime=regime, identifiers=identifiers, received_at=received_at,
        acknowledge_by=dates.acknowledge_by, due_on=dates.due, notes=notes, allow_recreation=allow_recreation,
        changes=changes or {},
        assignee=person(actor))
    PrivacyRequestTransition.objects.create(request=request, to_status=request.status, action="create",
                                            actor=person(actor), at=received_at)
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
    _refuse(request, "verify")
    request.verified_at = timezone.now()
    request_transition(request, to=RequestStatus.IN_PROGRESS, action="verify", actor=person(actor), note=note)
    request.save(update_fields=["status", "verified_at"])
    return request


@transaction.atomic
def privacy_request_extend(*, request_id: int, reason: str, actor=None) -> PrivacyRequest:
    """Moves the due date by the one extension the regime allows; the reason is told to the subject."""
    request = _locked(request_id)
    _refuse(request, "extend")
    if not reason.strip():
        raise RequestStateError("reason_required", "An extension needs a reason.")
    request.due_on = extended_due(regime=request.regime, received=request.received_at, due=request.due_on)
    request.extended_reason = reason.strip()
    request_transition(request, to=request.status, action="extend", actor=person(actor), note=reason.strip())
    request.save(update_fields=["due_on", "extended_reason", "status"])
    return request


@transaction.atomic
def privacy_request_reject(*, request_id: int, reason: str, actor=None) -> PrivacyRequest:
    request = _locked(request_id)
    _refuse(request, "reject")
    if not reason.strip():
        raise RequestStateError("reason_required", "A rejection needs a reason.")
    request.rejected_reason = reason.strip()
    request.completed_at = timezone.now()
    request_transition(request, to=RequestStatus.REJECTED, action="reject", actor=person(actor), note=reason.strip())
    request.save(update_fields=["status", "rejected_reason", "completed_at"])
    return request


@transaction.atomic
def privacy_request_execute(*, request_id: int, actor=None, source: str = ConsentSource.API) -> PrivacyRequest:
    """Carries the request out: an opt-out at once; a deletion by queueing the erasure task after commit.

    Access and portability build their export in the background; restriction completes at once, rectification
    once the pipeline has processed the corrected traits (whose values before are kept on the request).
    `source` is where the consent choices of an opt-out or a restriction are recorded as coming from (the
    privacy screens say so; the API's callers are "api"). Raises RequestStateError when the request is not
    verified (opt-outs need no verification).
    """
    request = _locked(request_id)
    if request.status == RequestStatus.IN_PROGRESS and request.progress.get("started_at"):
        return request  # already running: executing twice is harmless
    _refuse(request, "execute")
    profile_ids = subject_profile_ids(identifiers=request.identifiers)
    now = timezone.now()
    if request.kind == RequestKind.OPT_OUT:
        live = profile_selectors.profiles_live(profile_ids=profile_ids)
        consent_record(choices=[ConsentChoice(profile_id=pid, purpose="sale_sharing", granted=False,
                                              source=source, recorded_at=now,
                                              reason=f"privacy request {request.pk}") for pid in live],
                       actor=actor)
        request.receipt = {"request": request.pk, "kind": request.kind, "profiles": len(profile_ids),
                           "completed_at": now.isoformat()}
        request.completed_at = now
        request_transition(request, to=RequestStatus.COMPLETED, action="execute", actor=person(actor))
        request.save(update_fields=["status", "receipt", "completed_at"])
        return request
    if request.kind in (RequestKind.ACCESS, RequestKind.PORTABILITY):
        request.progress = {"started_at": now.isoformat(), "profile_ids": profile_ids}
        request_transition(request, to=RequestStatus.IN_PROGRESS, action="execute", actor=person(actor))
        request.save(update_fields=["status", "progress"])
        export_queue(request_id=request.pk)
        return request
    if request.kind == RequestKind.RESTRICTION:
        # GDPR Art. 18: the data is kept but not used. Denying every purpose makes each enforcement selector
        # leave the profile out; lifting the restriction is a new choice, recorded like any other.
        live = profile_selectors.profiles_live(profile_ids=profile_ids)
        keys = list(Purpose.objects.values_list("key", flat=True))
        consent_record(choices=[ConsentChoice(profile_id=pid, purpose=key, granted=False, source=source,
                                              recorded_at=now, reason=f"restriction of processing, privacy request "
                                                                      f"{request.pk}")
                                for pid in live for key in keys], actor=actor)
        return _complete(request, actor, {"profiles": len(live)})
    if request.kind == RequestKind.RECTIFICATION:
        # What the traits were, to show beside what they became. Personal data like the changes themselves, so
        # an erasure of the subject reduces both alike (consent.services.transitions.request_reduce).
        before = {str(pid): values for pid, values in profile_traits(
            profile_ids=profile_ids, keys=sorted(request.changes)).items()}
        awaiting = _rectify(request, profile_ids, now)
        if not awaiting:
            request.progress = {"started_at": now.isoformat(), "before": before}
            request.save(update_fields=["progress"])
            return _complete(request, actor, {"profiles": 0, "traits": sorted(request.changes)})
        # Completed by the pipeline once it has processed every message (privacy_rectifications_processed).
        request.progress = {"started_at": now.isoformat(), "awaiting": awaiting, "profiles": len(awaiting),
                            "before": before}
        request_transition(request, to=RequestStatus.IN_PROGRESS, action="execute", actor=person(actor))
        request.save(update_fields=["status", "progress"])
        return request
    erasure_start(request=request, profile_ids=profile_ids, actor=actor, now=now)
    return request


@transaction.atomic
def privacy_request_assign(*, request_id: int, assignee_id: int | None, actor=None) -> PrivacyRequest:
    """Gives an open request to someone who may handle requests, or to no one (`assignee_id` None): a
    transition with its actor, so it is in the request's history and the audit log. Assigning to the current
    assignee changes nothing. Raises RequestStateError for a closed request or an assignee who may not handle
    requests (`invalid_assignee`)."""
    request = _locked(request_id)
    _refuse(request, "assign")
    if request.assignee_id == assignee_id:
        return request
    officers = privacy_officer_ids()
    if assignee_id is not None and assignee_id not in officers:
        raise RequestStateError("invalid_assignee", "Only an active user who handles privacy requests can be "
                                                    "assigned.")
    previous, request.assignee_id = request.assignee_id, assignee_id
    request_transition(request, to=request.status, action="assign", actor=person(actor),
                       note=officers.get(assignee_id, ""), details={"assignee": assignee_id, "previous": previous})
    request.save(update_fields=["assignee", "status"])
    return request


def _complete(request: PrivacyRequest, actor, details: dict, action: str = "execute") -> PrivacyRequest:
    now = timezone.now()
    request.receipt = {"request": request.pk, "kind": request.kind, **details, "completed_at": now.isoformat()}
    request.completed_at = now
    request_transition(request, to=RequestStatus.COMPLETED, action=action, actor=person(actor), details=details)
    request.save(update_fields=["status", "receipt", "completed_at"])
    return request


def _rectify(request: PrivacyRequest, profile_ids: list[int], now) -> list[str]:
    """Sets the corrected traits with an identify message per live profile, accepted and processed by the same
    code as any collected message, so trait history and identity rules apply as always. Its source replaces
    identifiers: a corrected email or phone becomes the identifier, and the old value no longer finds the
    profile. Returns the messages' ids."""
    source = source_get_or_create(name=RECTIFICATION_SOURCE, replaces_identifiers=True)
    address = profile_selectors.identifiers_addressing(profile_ids=profile_ids)
    messages = [{"type": "identify", "userId" if kind == "user_id" else "anonymousId": value,
                 "traits": request.changes, "messageId": RECTIFICATION_MESSAGE.format(request=request.pk, profile=pid),
                 "timestamp": now.isoformat()} for pid, (kind, value) in sorted(address.items())]
    events_accept(source=source, messages=messages)
    return [m["messageId"] for m in messages]


def privacy_rectifications_processed(*, messages: list[tuple[int, str]]) -> list[int]:
    """The pipeline's step, given the (source id, message id) of a batch's events: completes each rectification
    whose messages are all processed (or dropped by the consent gate) with this batch; returns the completed
    requests' ids. Runs in the batch's transaction; costs nothing for a batch without rectification messages."""
    prefix = RECTIFICATION_MESSAGE.split("{")[0]
    candidates = [(source_id, m) for source_id, m in messages if m.startswith(prefix)]
    if not candidates:
        return []
    source_id = profile_selectors.source_id_named(name=RECTIFICATION_SOURCE)
    mine: dict[int, set[str]] = {}
    for sender, message_id in candidates:
        if sender == source_id:
            request_id = message_id[len(prefix):].split("-")[0]
            if request_id.isdigit():
                mine.setdefault(int(request_id), set()).add(message_id)
    completed = []
    for request in PrivacyRequest.objects.select_for_update().filter(
            pk__in=mine, kind=RequestKind.RECTIFICATION, status=RequestStatus.IN_PROGRESS).order_by("pk"):
        awaiting = [m for m in request.progress.get("awaiting", []) if m not in mine[request.pk]]
        if awaiting:
            request.progress = {**request.progress, "awaiting": awaiting}
            request.save(update_fields=["progress"])
            continue
        _complete(request, "pipeline", {"profiles": request.progress.get("profiles", 0),
                                        "traits": sorted(request.changes)}, action="rectified")
        completed.append(request.pk)
    return completed


def privacy_requests_unfinished(*, older_than: timedelta = timedelta(minutes=10)) -> tuple[list[int], list[int]]:
    """Started erasures and exports not completed after `older_than`: (deletion ids, access/portability ids)."""
    started = PrivacyRequest.objects.filter(status=RequestStatus.IN_PROGRESS, progress__has_key="started_at",
                                            transitions__action="execute",
                                            transitions__at__lte=timezone.now() - older_than).distinct()
    erasing = list(started.filter(kind=RequestKind.DELETION).values_list("id", flat=True))
    exporting = list(started.filter(kind__in=[RequestKind.ACCESS, RequestKind.PORTABILITY],
                                    exports__isnull=True).values_list("id", flat=True))
    return erasing, exporting


