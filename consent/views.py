"""The privacy officer's screens: the dashboard, the request queue, one request with its actions, new requests,
receipts, downloads and the audit log.

Forms check what was typed (consent.forms) and show each error next to its field, with the page re-rendered as
typed and a 400; services do the work and decide which actions apply (consent.services.privacy).
"""
import re
from datetime import timedelta

import orjson
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from consent import forms, selectors
from consent.models import ConsentSource, PrivacyRequest, RequestKind, RequestStatus
from consent.receipts import progress_lines, receipt_document, receipt_lines, receipt_text, receipt_times
from consent.services import exports, privacy
from consent.services.audit import audit_verify
from profiles.common.workers import queue_consumed
from profiles.masking import mask_identifier, mask_value, masks_for

VIEW = permission_required("consent.view_privacyrequest", raise_exception=True)
CHANGE = permission_required("consent.change_privacyrequest", raise_exception=True)
ADD = permission_required("consent.add_privacyrequest", raise_exception=True)
VIEW_AUDIT = permission_required("consent.view_auditentry", raise_exception=True)
QUEUE_LIMIT = 500
EXPORT_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
AUDIT_PAGE = 50
SOON_DAYS = 7


def _page(request, template: str, context: dict, status: int = 200, back: str = ""):
    """A full privacy screen: with the time zone its times are shown in, and the choice of another (which comes
    back to `back`, by default this page)."""
    back = back or (request.get_full_path() if request.method == "GET" else request.path)
    return render(request, template, {**context, "time_zone_form": forms.time_zone_form(back)}, status=status)


def _deadline(r: PrivacyRequest, today) -> dict:
    """Days left until the due date, and the flag the screens colour by (open requests only)."""
    days = (r.due_on - today).days
    if r.status not in privacy.OPEN:
        return {"days_left": None, "overdue_by": None, "flag": ""}
    return {"days_left": days, "overdue_by": -days if days < 0 else None,
            "flag": "overdue" if days < 0 else "soon" if days <= SOON_DAYS else ""}


def _subject(r: PrivacyRequest, masks: bool) -> str:
    """The first identifier's value, masked for readers without the personal data permission; only its type
    once the subject is erased."""
    first = next(iter(r.identifiers or []), None)
    if not isinstance(first, dict):
        return ""
    value = first.get("value")
    if value is None:
        return f"{first.get('type', '')} (erased)"
    return mask_identifier(first.get("type", ""), str(value)) if masks else str(value)


@VIEW
def dashboard(request):
    today = privacy.privacy_today()
    masks = masks_for(request.user)
    urgent = [{"r": r, "subject": _subject(r, masks), **_deadline(r, today)}
              for r in selectors.privacy_requests_find().filter(due_on__lte=today + timedelta(days=SOON_DAYS))[:10]]
    return _page(request, "consent/dashboard.html", {
        "counts": selectors.privacy_request_counts(today=today), "urgent": urgent,
        "rates": selectors.consent_rates(), "soon_days": SOON_DAYS,
        "privacy_queue_idle": not queue_consumed("privacy")})


@VIEW
def request_queue(request):
    officers = selectors.privacy_officer_ids()
    form = forms.QueueFilterForm(request.GET, officers=officers)
    status, rows, counts = 200, [], {}
    if not form.is_valid():
        status = 400
    else:
        arguments = form.selector_arguments()
        today, masks = privacy.privacy_today(), masks_for(request.user)
        rows = [{"r": r, "subject": _subject(r, masks), **_deadline(r, today)}
                for r in selectors.privacy_requests_find(**arguments)[:QUEUE_LIMIT]]
        counts = selectors.privacy_requests_open_and_closed(
            requests=selectors.privacy_requests_find(**{**arguments, "closed": None}))
    closed = form.is_valid() and form.cleaned_data.get("state") == "closed"
    tab_query = request.GET.copy()
    tab_query.pop("state", None)
    return _page(request, "consent/request_list.html", {
        "form": form, "rows": rows, "counts": counts, "closed": closed, "limit": QUEUE_LIMIT,
        "tab_query": tab_query.urlencode(), "privacy_queue_idle": not queue_consumed("privacy")}, status=status)


@ADD
def request_new(request):
    form, identifiers, changes = forms.new_request_forms(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        arguments = forms.new_request_clean(form, identifiers, changes)
        if arguments is not None:
            try:
                created = privacy.privacy_request_create(actor=request.user, **arguments)
            except privacy.RequestStateError as error:
                form.add_error(None, str(error))
            else:
                return redirect("privacy-request", request_id=created.pk)
    return _page(request, "consent/request_form.html", {
        "form": form, "identifiers": identifiers, "changes": changes, "rectification": RequestKind.RECTIFICATION},
        status=400 if form.is_bound else 200)


def _rectification_rows(r: PrivacyRequest, masks: bool) -> list[dict]:
    """What a rectification asked, and once carried out what each profile's traits were before."""
    before = (r.progress or {}).get("before") or {}

    def show(value):
        return mask_value(value) if masks and value not in (None, "") else value

    rows = []
    for key, value in (r.changes or {}).items():
        rows.append({"key": key, "after": show(value),
                     "before": [(pid, show(values.get(key))) for pid, values in sorted(before.items())
                                if isinstance(values, dict)]})
    return rows


def _action_form(action: str, data, officers: dict[int, str], initial: dict | None = None):
    # Ids per action: several forms on one page each have their own "reason" field and label.
    options = {"auto_id": f"id_{action}_%s", "initial": initial if action == "assign" else None}
    if action == "assign":
        return forms.AssignForm(data, officers=officers, **options)
    return forms.ACTION_FORMS[action](data, **options)


def _detail_context(request, subject_request: PrivacyRequest, bound: dict | None = None) -> dict:
    masks = masks_for(request.user)
    officers = selectors.privacy_officer_ids()
    actions = privacy.privacy_request_actions(request=subject_request)
    action_forms = {name: _action_form(name, None, officers, initial={"assignee": subject_request.assignee_id})
                    for name in actions}
    action_forms.update(bound or {})
    identifiers = [{"type": i.get("type", ""), "value": None if i.get("value") is None else
                    (mask_identifier(i.get("type", ""), str(i["value"])) if masks else i["value"])}
                   for i in subject_request.identifiers if isinstance(i, dict)]
    return {"r": subject_request, "profiles": selectors.privacy_request_subject(request=subject_request),
            "identifiers": identifiers, "changes": _rectification_rows(subject_request, masks),
            "export": subject_request.exports.first(), "now": timezone.now(), "actions": action_forms,
            "receipt_lines": receipt_lines(subject_request.receipt), "receipt_times": receipt_times(
                subject_request.receipt), "progress_lines": progress_lines(subject_request.progress),
            "masks": masks, "privacy_queue_idle": not queue_consumed("privacy"),
            **_deadline(subject_request, privacy.privacy_today())}


def _request(request_id) -> PrivacyRequest:
    request_id = int(request_id)
    if request_id > forms.MAX_ID:
        raise Http404("No such privacy request.")
    return get_object_or_404(PrivacyRequest.objects.select_related("assignee")
                             .prefetch_related("transitions__actor", "exports"), pk=request_id)


@VIEW
def request_detail(request, request_id):
    subject_request = _request(request_id)
    context = _detail_context(request, subject_request)
    if request.headers.get("HX-Request") == "true":
        return render(request, "consent/_request_status.html", context)
    return _page(request, "consent/request_detail.html", context)


def _act(request, subject_request: PrivacyRequest, action: str, data: dict) -> None:
    common = {"request_id": subject_request.pk, "actor": request.user}
    if action == "verify":
        privacy.privacy_request_verify(note=data["note"].strip(), **common)
    elif action == "execute":
        # Where the consent choices of an opt-out or a restriction come from: this screen.
        privacy.privacy_request_execute(source=ConsentSource.PRIVACY_REQUEST, **common)
    elif action == "extend":
        privacy.privacy_request_extend(reason=data["reason"], **common)
    elif action == "reject":
        privacy.privacy_request_reject(reason=data["reason"], **common)
    else:
        privacy.privacy_request_assign(assignee_id=data["assignee"], **common)


@CHANGE
@require_POST
def request_action(request, request_id, action):
    if action not in privacy.ACTIONS:
        raise Http404("No such action.")
    subject_request = _request(request_id)
    form = _action_form(action, request.POST, selectors.privacy_officer_ids())
    if form.is_valid():
        try:
            _act(request, subject_request, action, form.cleaned_data)
        except privacy.RequestStateError as error:
            form.add_error("reason" if error.code == "reason_required" else
                           "assignee" if error.code == "invalid_assignee" else None, str(error))
        else:
            return redirect("privacy-request", request_id=subject_request.pk)
    # Shown where it was typed: the action's own form on this request's page, with what was typed.
    subject_request = _request(request_id)
    context = _detail_context(request, subject_request, bound={action: form})
    context["failed_action"] = action
    return _page(request, "consent/request_detail.html", context, status=400,
                 back=reverse("privacy-request", args=[subject_request.pk]))


@VIEW
def receipt_download(request, request_id, fmt):
    subject_request = _request(request_id)
    if subject_request.status not in (RequestStatus.COMPLETED, RequestStatus.REJECTED):
        raise Http404("The request has no receipt yet.")
    if fmt == "json":
        response = HttpResponse(orjson.dumps(receipt_document(subject_request), option=orjson.OPT_INDENT_2),
                                content_type="application/json")
    else:
        response = HttpResponse(receipt_text(subject_request, zone=timezone.get_current_timezone()),
                                content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="privacy-request-{subject_request.pk}-receipt.{fmt}"'
    return response


@VIEW
def export_download(request, token):
    if not EXPORT_TOKEN.fullmatch(token):  # the links hold secrets.token_urlsafe(32): anything else is no link
        raise Http404("No such download.")
    body = exports.export_download(token=token, actor=request.user)
    if body is None:
        return HttpResponse("This download link was used already or has expired.", status=410,
                            content_type="text/plain")
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="subject-export.json"'
    return response


@VIEW_AUDIT
def audit_log(request):
    form = forms.AuditFilterForm(request.GET)
    entries, more, status = [], False, 200
    if not form.is_valid():
        status = 400
    else:
        entries = selectors.audit_entries(limit=AUDIT_PAGE, **form.selector_arguments())
        more, entries = len(entries) > AUDIT_PAGE, entries[:AUDIT_PAGE]
    older = request.GET.copy()
    if more:
        older["before"] = entries[-1].pk
    newest = request.GET.copy()
    newest.pop("before", None)
    return _page(request, "consent/audit_log.html", {
        "form": form, "entries": entries, "more": more, "older_query": older.urlencode(),
        "newest_query": newest.urlencode(), "paged": bool(request.GET.get("before"))}, status=status)


@VIEW_AUDIT
@require_POST
def audit_chain_verify(request):
    checked, broken = audit_verify()
    context = {"checked": checked, "broken": broken}
    if request.headers.get("HX-Request") == "true":
        return render(request, "consent/_audit_verify.html", context)
    return _page(request, "consent/audit_log.html", {**context, "form": forms.AuditFilterForm(), "verified": True},
                 back=reverse("privacy-audit"))
