"""The privacy officer's screens: the request queue, one request with its actions, new requests, downloads."""
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from consent import selectors
from consent.models import PrivacyRequest, Regime, RequestKind, RequestStatus
from consent.services import exports, privacy
from profiles.common.workers import queue_consumed

VIEW = permission_required("consent.view_privacyrequest", raise_exception=True)
CHANGE = permission_required("consent.change_privacyrequest", raise_exception=True)
ADD = permission_required("consent.add_privacyrequest", raise_exception=True)


@VIEW
def request_queue(request):
    filters = {key: request.GET.get(key, "") for key in ("kind", "status", "regime")}
    today = timezone.localdate()
    rows = [(r, "overdue" if r.due_on < today and r.status in privacy.OPEN else
             "soon" if r.due_on <= today + timedelta(days=7) and r.status in privacy.OPEN else "")
            for r in selectors.privacy_request_queue(**filters)[:500]]
    return render(request, "consent/request_list.html", {
        "rows": rows, "filters": filters, "kinds": RequestKind.choices, "statuses": RequestStatus.choices,
        "regimes": Regime.choices, "privacy_queue_idle": not queue_consumed("privacy")})


@ADD
def request_new(request):
    if request.method == "POST":
        kind, regime = request.POST.get("kind", ""), request.POST.get("regime", "")
        kind_ok, regime_ok = kind in RequestKind.values, regime in Regime.values
        identifiers = [{"type": t, "value": v.strip()} for t, v in zip(request.POST.getlist("identifier_type"),
                                                                          request.POST.getlist("identifier_value"))
                       if v.strip()]
        if kind_ok and regime_ok and identifiers:
            created = privacy.privacy_request_create(kind=kind, regime=regime, identifiers=identifiers,
                                                     actor=request.user, notes=request.POST.get("notes", ""),
                                                     allow_recreation=bool(request.POST.get("allow_recreation")))
            return redirect("privacy-request", request_id=created.pk)
        messages.error(request, "Choose a kind and a regime, and give at least one identifier of the subject.")
    return render(request, "consent/request_form.html", {"kinds": RequestKind.choices, "regimes": Regime.choices})


@VIEW
def request_detail(request, request_id):
    subject_request = get_object_or_404(PrivacyRequest.objects.prefetch_related("transitions__actor", "exports"),
                                        pk=request_id)
    context = {"r": subject_request, "profiles": selectors.privacy_request_subject(request=subject_request),
               "export": subject_request.exports.first(), "now": timezone.now(),
               "privacy_queue_idle": not queue_consumed("privacy")}
    if request.headers.get("HX-Request") == "true":
        return render(request, "consent/_request_status.html", context)
    return render(request, "consent/request_detail.html", context)


ACTIONS = {
    "verify": lambda rid, user, reason: privacy.privacy_request_verify(request_id=rid, actor=user),
    "execute": lambda rid, user, reason: privacy.privacy_request_execute(request_id=rid, actor=user),
    "extend": lambda rid, user, reason: privacy.privacy_request_extend(request_id=rid, actor=user, reason=reason),
    "reject": lambda rid, user, reason: privacy.privacy_request_reject(request_id=rid, actor=user, reason=reason),
}


@CHANGE
@require_POST
def request_action(request, request_id, action):
    if action not in ACTIONS:
        raise Http404("No such action.")
    get_object_or_404(PrivacyRequest, pk=request_id)
    try:
        ACTIONS[action](request_id, request.user, request.POST.get("reason", ""))
    except privacy.RequestStateError as error:
        messages.error(request, str(error))
    return redirect("privacy-request", request_id=request_id)


@VIEW
def export_download(request, token):
    body = exports.export_download(token=token, actor=request.user)
    if body is None:
        return HttpResponse("This download link was used already or has expired.", status=410,
                            content_type="text/plain")
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="subject-export.json"'
    return response
