"""The web screens: the marketer's dashboard, the profile list and the profile 360 page (with its consent)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.http import Http404
from django.shortcuts import redirect, render

from cdp import selectors
from consent import selectors as consent_selectors
from consent.forms import MAX_ID, ConsentChoiceForm
from consent.models import ConsentSource
from consent.services.ledger import ConsentChoice, UnknownPurpose, consent_record
from profiles.common.permissions import PRIVACY_OFFICER
from profiles.masking import mask_identifier, mask_merge_record, mask_payload, mask_traits, masks_for
from profiles.selectors import profile_get


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _mask_timeline(timeline):
    # In memory only, for rendering: the rows are never saved.
    for event in timeline:
        event.payload = mask_payload(event.payload)
    return timeline


@login_required
def dashboard(request):
    stats = selectors.dashboard_stats()
    charts = {key: stats[key] for key in ("days", "events_by_type", "new_profiles", "merges")}
    charts["top_events"] = stats["top_events"]
    return render(request, "cdp/dashboard.html", {"stats": stats, "charts": charts})


@login_required
def profile_list(request):
    query = request.GET.get("q", "")
    masks = masks_for(request.user)
    page = selectors.profile_list_page(query=query, partial=not masks, page=request.GET.get("page", 1))
    if masks:
        for profile in page:
            profile.traits = mask_traits(profile.traits)
    return render(request, "profiles/profile_list.html", {"page": page, "query": query})


@login_required
def profile_detail(request, profile_id):
    profile = profile_get(profile_id=profile_id)
    if profile is None:
        raise Http404("No such profile.")
    if profile.pk != profile_id:
        return redirect("profile-detail", profile_id=profile.pk)
    timeline = selectors.profile_timeline(profile_id=profile_id, page=request.GET.get("page", 1))
    masks = masks_for(request.user)
    if masks:
        _mask_timeline(timeline)
    if _is_htmx(request):
        # "Load more" asks for the next page of the timeline only.
        return render(request, "profiles/_timeline.html", {"timeline": timeline, "profile_id": profile_id})
    context = {"profile": profile, "timeline": timeline, "profile_id": profile_id,
               "consent": consent_selectors.consent_current(profile=profile),
               "consent_history": consent_selectors.consent_history(profile=profile)[:50]}
    context.update(selectors.profile_detail(profile=profile))
    if masks:
        profile.traits = mask_traits(profile.traits)
        context["traits"] = sorted(profile.traits.items())
        context["identifiers"] = {kind: [{"value": mask_identifier(kind, i.value), "first_seen": i.first_seen}
                                         for i in items] for kind, items in context["identifiers"].items()}
        for merge in context["merges"]:  # in memory only, for rendering
            merge.reason, merge.linking_identifiers = mask_merge_record(
                reason=merge.reason, linking_identifiers=merge.linking_identifiers)
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
