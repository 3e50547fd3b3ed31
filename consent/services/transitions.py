"""Moving a privacy request from one status to another: the transition row and its audit entry, together."""
from __future__ import annotations

from django.utils import timezone

from consent.models import PrivacyRequest, PrivacyRequestTransition
from consent.services.audit import audit_record


class RequestStateError(Exception):
    """The request is not in a status that allows the action; `code` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def person(actor):
    """The user behind an action, or None for the system, the API's anonymous callers and named parts."""
    return actor if getattr(actor, "is_authenticated", False) else None


def request_transition(request: PrivacyRequest, *, to: str, action: str, actor=None, note: str = "",
                       details: dict | None = None) -> None:
    """Records the move (the caller saves the request in the same transaction) and audits it."""
    PrivacyRequestTransition.objects.create(request=request, from_status=request.status, to_status=to,
                                            action=action, note=note, actor=actor, at=timezone.now())
    audit_record(actor=actor or "system", action=f"privacy_request.{action}", target_type="privacy_request",
                 target_id=request.pk, details={"kind": request.kind, "from": request.status, "to": to,
                                                **(details or {})})
    request.status = to


def request_reduce(request: PrivacyRequest) -> None:
    """What is left of a request once its subject is erased: only the kinds of identifiers it named, and the
    names of the traits a rectification changed (the caller saves identifiers, changes, notes and progress).
    Its transitions' notes go too."""
    request.identifiers = [{"type": item["type"]} for item in request.identifiers]
    request.changes = {key: None for key in request.changes}
    if request.progress.get("before"):  # a rectification's values before, alike
        request.progress = {**request.progress, "before": {pid: {key: None for key in values}
                                                           for pid, values in request.progress["before"].items()}}
    request.notes = ""
    PrivacyRequestTransition.objects.filter(request=request).update(note="")
