"""The web screens: the marketer's dashboard, the profile list and the profile 360 page (with its consent)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.http import Http404
from django.shortcuts import redirect, render

from cdp import selectors
from consent import selectors as consent_selectors
from consent.models import ConsentSource
from consent.services.ledger import ConsentChoice, UnknownPurpose, consent_record
from profiles.masking import (known_values, mask_identifier, mask_merge_record, mask_payload, mask_traits,
                              masks_for)
from profiles.selectors import profile_get


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _mask_timeline(timeline, known):
    # In memory only, for rendering: the rows are never saved.
    for event in timeline:
        event.payload = mask_payload(event.payload, known)
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
            profile.traits = mask_traits(profile.traits, known_values(profile.identifiers.all()))
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
        known = known_values(profile.identifiers.all())
        _mask_timeline(timeline, known)
    if _is_htmx(request):
        # "Load more" asks for the next page of the timeline only.
        return render(request, "profiles/_timeline.html", {"timeline": timeline, "profile_id": profile_id})
    context = {"profile": profile, "timeline": timeline, "profile_id": profile_id,
               "consent": consent_selectors.consent_current(profile=profile),
               "consent_history": consent_selectors.consent_history(profile=profile)[:50]}
    context.update(selectors.profile_detail(profile=profile))
    if masks:
        profile.traits = mask_traits(profile.traits, known)
        context["traits"] = sorted(profile.traits.items())
        context["identifiers"] = {kind: [{"value": mask_identifier(kind, i.value), "first_seen": i.first_seen}
                                         for i in items] for kind, items in context["identifiers"].items()}
        for merge in context["merges"]:  # in memory only, for rendering
            merge.reason, merge.linking_identifiers = mask_merge_record(
                reason=merge.reason, linking_identifiers=merge.linking_identifiers, known=known)
    return render(request, "profiles/profile_detail.html", context)


@permission_required("consent.add_consententry", raise_exception=True)
@require_POST
def profile_consent_record(request, profile_id):
    """A choice the person made outside the product (a paper form, a call), recorded by a privacy officer."""
    profile = profile_get(profile_id=profile_id)
    if profile is None:
        raise Http404("No such profile.")
    granted = request.POST.get("granted")
    if granted not in ("yes", "no"):
        messages.error(request, "Choose granted or denied.")
    else:
        try:
            consent_record(choices=[ConsentChoice(
                profile_id=profile.pk, purpose=request.POST.get("purpose", ""), granted=granted == "yes",
                source=ConsentSource.WEB_FORM, recorded_at=timezone.now(),
                policy_version=request.POST.get("policy_version", "").strip(),
                reason=request.POST.get("reason", "").strip())], actor=request.user)
        except UnknownPurpose as error:
            messages.error(request, str(error))
    return redirect("profile-detail", profile_id=profile.pk)
