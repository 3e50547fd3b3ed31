"""The web screens: the marketer's dashboard, the profile list and the profile 360 page (with its consent)."""
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render

from cdp import selectors
from consent import selectors as consent_selectors
from profiles.masking import mask_identifier, mask_payload, mask_traits
from profiles.selectors import profile_get


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _masks(request) -> bool:
    return not request.user.has_perm("profiles.view_personal_data")


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
    page = selectors.profile_search(query=query, page=request.GET.get("page", 1))
    if _masks(request):
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
    masks = _masks(request)
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
    return render(request, "profiles/profile_detail.html", context)
