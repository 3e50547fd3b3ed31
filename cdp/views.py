"""The web screens: the marketer's dashboard, the profile list and its export, the profile 360 page (with its
consent), and the error pages every screen shares."""
import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.http import Http404, HttpResponseServerError, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template import loader

from cdp import profile_csv, selectors
from cdp.forms import DASHBOARD_PRESETS, DashboardRangeForm, ProfileFilterForm
from consent import selectors as consent_selectors
from consent.forms import MAX_ID, ConsentChoiceForm
from consent.models import ConsentSource
from consent.services.ledger import ConsentChoice, UnknownPurpose, consent_record
from profiles.common.permissions import PRIVACY_OFFICER
from profiles.masking import (known_values, mask_identifier, mask_json, mask_merge_record, mask_payload, mask_text,
                              mask_traits, masks_for)
from profiles.selectors import profile_get
from segments.selectors import profile_learned, profile_segments


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _mask_timeline(timeline, known):
    # In memory only, for rendering: the rows are never saved.
    for event in timeline:
        event.payload = mask_payload(event.payload, known)
    return timeline


@login_required
def dashboard(request):
    form = DashboardRangeForm(request.GET or None)
    span = form.date_range()
    stats = selectors.dashboard_stats(start=span.start, end=span.end)
    charts = {key: stats[key] for key in ("days", "events_by_type", "new_profiles", "merges")}
    return render(request, "cdp/dashboard.html", {"stats": stats, "charts": charts, "form": form, "span": span,
                                                  "presets": DASHBOARD_PRESETS})


def _profile_filters(request) -> tuple[ProfileFilterForm, dict]:
    form = ProfileFilterForm(request.GET)
    form.is_valid()  # a bad field is shown on the form and left out; the valid ones still filter
    return form, {**form.filters(), "partial": not masks_for(request.user)}


@login_required
def profile_list(request):
    form, filters = _profile_filters(request)
    masks = masks_for(request.user)
    page = selectors.profile_list_page(page=request.GET.get("page", 1), **filters)
    if masks:
        for profile in page:
            profile.traits = mask_traits(profile.traits, known_values(profile.identifiers.all()))
    # The filters again, for the pager's and the export's links.
    params = request.GET.copy()
    params.pop("page", None)
    return render(request, "profiles/profile_list.html", {
        "page": page, "form": form, "query": filters["query"], "params": params.urlencode(),
        "filtered": any(form.cleaned_data.get(k) for k in form.fields if k != "sort")})


@login_required
def profile_export(request):
    """The list as filtered, as CSV: masked for roles without the personal data permission, and without the
    profiles that may not leave the platform (no sale/sharing consent)."""
    _form, filters = _profile_filters(request)
    rows = selectors.profile_export_rows(**filters)
    response = StreamingHttpResponse(profile_csv.csv_lines(rows, masks=masks_for(request.user)),
                                     content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="profiles-{timezone.localdate().isoformat()}.csv"'
    return response


@login_required
def profile_detail(request, profile_id):
    profile = profile_get(profile_id=profile_id)
    if profile is None:
        erased_by = consent_selectors.erasure_request_for_profile(profile_id=profile_id)
        if erased_by is not None:
            return render(request, "404.html", status=404, context={
                "title": f"Profile #{profile_id} was erased",
                "reason": f"This profile was erased by request #{erased_by}, a data subject's request for "
                          "deletion: nothing of it is kept."})
        return render(request, "404.html", status=404, context={
            "title": f"No profile #{profile_id}",
            "reason": "No profile has this number. Search the profiles by an email, a user id or a phone number."})
    if profile.pk != profile_id:
        return redirect("profile-detail", profile_id=profile.pk)
    timeline = selectors.profile_timeline(profile_id=profile_id, page=request.GET.get("page", 1))
    masks = masks_for(request.user)
    if masks:
        known = known_values(profile.identifiers.all())
        _mask_timeline(timeline, known)
    if _is_htmx(request):
        # "Load more" asks for the next page of the timeline only.
        return render(request, "profiles/_timeline.html", {"timeline": timeline, "profile_id": profile_id})
    context = {"profile": profile, "timeline": timeline, "profile_id": profile_id,
               "consent": consent_selectors.consent_current(profile=profile),
               "consent_history": consent_selectors.consent_history(profile=profile)[:50],
               "segments": list(profile_segments(profile_id=profile.pk)),
               "learned": profile_learned(profile=profile)}
    context.update(selectors.profile_detail(profile=profile))
    if masks:
        profile.traits = mask_traits(profile.traits, known)
        context["traits"] = sorted(profile.traits.items())
        context["identifiers"] = {kind: [{"value": mask_identifier(kind, i.value), "first_seen": i.first_seen}
                                         for i in items] for kind, items in context["identifiers"].items()}
        for membership in context["segments"]:  # in memory only, for rendering
            membership.reasons = [{**r, "condition": mask_text(r.get("condition", ""), known),
                                   "value": mask_json(r.get("value"), known)} for r in membership.reasons]
        for merge in context["merges"]:  # in memory only, for rendering
            merge.reason, merge.linking_identifiers = mask_merge_record(
                reason=merge.reason, linking_identifiers=merge.linking_identifiers, known=known)
    return render(request, "profiles/profile_detail.html", context)


@permission_required("consent.add_consententry", raise_exception=True)
@require_POST
def profile_consent_record(request, profile_id):
    """A choice the person made outside the product (a paper form, a call), recorded by a privacy officer."""
    profile = profile_get(profile_id=profile_id) if profile_id <= MAX_ID else None
    if profile is None:
        raise Http404("No such profile.")
    form = ConsentChoiceForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            consent_record(choices=[ConsentChoice(
                profile_id=profile.pk, purpose=data["purpose"], granted=data["granted"] == "yes",
                source=ConsentSource.PRIVACY_OFFICER, recorded_at=timezone.now(),
                policy_version=data["policy_version"].strip(), reason=data["reason"].strip())], actor=request.user)
        except UnknownPurpose as error:
            form.add_error("purpose", str(error))
        else:
            return redirect("profile-detail", profile_id=profile.pk)
    # Refused: this profile's page again, the errors shown in its record-a-choice form.
    for field, errors in form.errors.items():
        messages.error(request, f"{field.replace('_', ' ')}: {' '.join(errors)}")
    response = profile_detail(request, profile.pk)
    response.status_code = 400
    return response


@login_required
def landing(request):
    """Where a login lands: a privacy officer on the privacy dashboard, everyone else on the dashboard."""
    if request.user.groups.filter(name=PRIVACY_OFFICER).exists() and request.user.has_perm(
            "consent.view_privacyrequest"):
        return redirect("privacy-dashboard")
    return redirect("dashboard")


# Error pages of the screens. Under /api/ and /v1/ the API's JSON error body replaces them
# (cdp.middleware.ApiErrorsAsJson).
logger = logging.getLogger(__name__)


def page_not_found(request, exception=None):
    return render(request, "404.html", status=404)


def permission_denied(request, exception=None):
    roles = [group.name for group in request.user.groups.all()] if request.user.is_authenticated else []
    return render(request, "403.html", {"roles": roles}, status=403)


def server_error(request):
    try:
        return render(request, "500.html", status=500)
    except Exception:  # noqa: BLE001 - the layout reads the session and the user: the database may be what failed
        logger.exception("the 500 page could not be rendered with the layout's navigation")
        return HttpResponseServerError(loader.render_to_string("500.html"))
