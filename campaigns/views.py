"""The campaigns screens: the list (with the placements), the editor (variants and caps as rows, targeting, goal
and trigger beside them; an error is shown at its field's path), and a campaign's report (exposures and conversions over time
per variant, uplift with its interval, the verdict) with its lifecycle buttons."""
from __future__ import annotations

import re
from datetime import datetime

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from campaigns import rules, selectors
from campaigns.models import Campaign, Placement
from campaigns.services import definitions
from consent.selectors import purpose_choices
from profiles.selectors import event_names_seen
from segments.rules import DefinitionError
from segments.selectors import destinations_all, segment_ids_by_key

STATUS_ACTIONS = {"draft": ["activate", "end"], "active": ["pause", "end"], "paused": ["activate", "end"],
                  "ended": []}


@login_required
@permission_required("campaigns.view_campaign", raise_exception=True)
def campaign_list(request):
    status = request.GET.get("status", "")
    return render(request, "campaigns/campaign_list.html", {
        "campaigns": selectors.campaign_list(status=status if status in Campaign.Status.values else ""),
        "status": status, "statuses": Campaign.Status.choices, "placements": selectors.placement_list(),
        "channels": Placement.Channel.choices, "placement_form": {"channel": "web", "default_content": "{}"}})


@login_required
@permission_required("campaigns.add_placement", raise_exception=True)
@require_POST
def placement_new(request):
    form = {"key": request.POST.get("key", "").strip(), "name": request.POST.get("name", "").strip(),
            "channel": request.POST.get("channel", "web"), "default_content": request.POST.get("default_content", "")}
    error = None
    try:
        content = _json(form["default_content"] or "{}", "default_content")
        if not re.fullmatch(r"[-a-zA-Z0-9_]+", form["key"]):
            raise DefinitionError("a key is letters, digits, - and _", "key")
        if Placement.objects.filter(key=form["key"]).exists():
            raise DefinitionError(f'a placement with the key "{form["key"]}" exists', "key")
        if form["channel"] not in Placement.Channel.values:
            raise DefinitionError(f'unknown channel "{form["channel"]}"', "channel")
        definitions.placement_save(key=form["key"], name=form["name"], channel=form["channel"],
                                   default_content=content)
    except DefinitionError as exc:
        error = exc
    if error is None:
        messages.success(request, f"Placement {form['key']} saved.")
        return redirect("campaign-list")
    return render(request, "campaigns/campaign_list.html", {
        "campaigns": selectors.campaign_list(), "statuses": Campaign.Status.choices,
        "placements": selectors.placement_list(), "channels": Placement.Channel.choices, "placement_form": form,
        "placement_error": error}, status=400)


def _json(text: str, field: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DefinitionError(f"not valid JSON ({exc})", field) from exc


def _local_datetime(text: str, field: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DefinitionError("a date and time, 2026-12-31T09:00", field) from exc
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def _number(text: str, field: str, *, kind=float):
    try:
        return kind(text)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f'"{text}" is not a {"whole " if kind is int else ""}number', field) from exc


def _percent(text: str, field: str) -> float:
    percent = _number(text, field)
    if not 0 <= percent <= 100:
        raise DefinitionError("a percentage from 0 to 100", field)
    return percent / 100


def _form_from(request) -> dict:
    """The editor's fields as typed, kept whole so a refused form comes back as it was sent."""
    post = request.POST
    variants = [{"key": k, "weight": w, "content": c} for k, w, c in zip(
        post.getlist("variant_key"), post.getlist("variant_weight"), post.getlist("variant_content"))
        if k.strip() or w.strip() or c.strip()]
    caps = [{"count": n, "per": p} for n, p in zip(post.getlist("cap_count"), post.getlist("cap_per")) if n.strip()]
    return {"key": post.get("key", "").strip(), "name": post.get("name", "").strip(),
            "description": post.get("description", ""), "placements": post.getlist("placements"),
            "priority": post.get("priority", "0"), "purpose": post.get("purpose", ""),
            "starts_at": post.get("starts_at", ""), "ends_at": post.get("ends_at", ""),
            "targeting": post.get("targeting", ""), "variants": variants, "caps": caps,
            "control_percent": post.get("control_percent", "0"), "allocation": post.get("allocation", "fixed"),
            "goal_event": post.get("goal_event", "").strip(), "goal_within": post.get("goal_within", "").strip(),
            "goal_where": post.get("goal_where", ""), "exclusive_with": post.getlist("exclusive_with"),
            "trigger_segment": post.get("trigger_segment", ""), "trigger_placement": post.get("trigger_placement", ""),
            "trigger_destination": post.get("trigger_destination", ""),
            "trigger_payload": post.get("trigger_payload", ""), "trigger_delay": post.get("trigger_delay", "").strip(),
            "quiet_start": post.get("quiet_start", ""), "quiet_end": post.get("quiet_end", "")}


def _trigger_from(form: dict) -> dict | None:
    if not form["trigger_segment"]:
        return None
    trigger = {"segment": form["trigger_segment"], "placement": form["trigger_placement"],
               "destination": _number(form["trigger_destination"] or "0", "trigger.destination", kind=int)}
    if form["trigger_payload"].strip():
        trigger["payload"] = _json(form["trigger_payload"], "trigger.payload")
    if form["trigger_delay"]:
        trigger["delay"] = form["trigger_delay"]
    if form["quiet_start"] or form["quiet_end"]:
        trigger["quiet_hours"] = {"start": form["quiet_start"], "end": form["quiet_end"]}
    return trigger


def _definition_from(form: dict) -> dict:
    """The service's arguments from the form; raises DefinitionError at the first field that cannot be read."""
    variants = []
    for i, variant in enumerate(form["variants"]):
        content = _json(variant["content"] or "{}", f"variants[{i}].content")
        variants.append({"key": variant["key"].strip(), "weight": _number(variant["weight"], f"variants[{i}].weight"),
                         "content": content})
    caps = [{"count": _number(cap["count"], f"caps[{i}].count", kind=int), "per": cap["per"]}
            for i, cap in enumerate(form["caps"])]
    goal = None
    if form["goal_event"]:
        goal = {"event": form["goal_event"]}
        if form["goal_within"]:
            goal["within"] = form["goal_within"]
        if form["goal_where"].strip():
            goal["where"] = _json(form["goal_where"], "goal.where")
    placements = list(Placement.objects.filter(key__in=form["placements"]))
    return {"name": form["name"], "description": form["description"],
            "priority": _number(form["priority"] or "0", "priority", kind=int), "purpose": form["purpose"],
            "starts_at": _local_datetime(form["starts_at"], "starts_at"),
            "ends_at": _local_datetime(form["ends_at"], "ends_at"),
            "targeting": _json(form["targeting"], "targeting") if form["targeting"].strip() else None,
            "variants": variants, "caps": caps,
            "control_share": _percent(form["control_percent"] or "0", "control_share"),
            "allocation": form["allocation"], "goal": goal, "placements": placements, "trigger": _trigger_from(form),
            "exclusive_with": list(Campaign.objects.filter(key__in=form["exclusive_with"]))}


def _save(request, campaign: Campaign | None):
    form = _form_from(request)
    try:
        fields = _definition_from(form)
        if not fields["name"]:
            raise DefinitionError("a campaign needs a name", "name")
        if form["allocation"] not in Campaign.Allocation.values:
            raise DefinitionError(f'allocation is one of {", ".join(Campaign.Allocation.values)}', "allocation")
        if campaign is None:
            if not re.fullmatch(r"[-a-zA-Z0-9_]+", form["key"]):
                raise DefinitionError("a key is letters, digits, - and _", "key")
            if Campaign.objects.filter(key=form["key"]).exists():
                raise DefinitionError(f'a campaign with the key "{form["key"]}" exists', "key")
            fields["key"] = form["key"]
        saved = definitions.campaign_save(campaign=campaign, **fields)
    except DefinitionError as exc:
        return None, exc, form
    return saved, None, form


def _local_input(at: datetime | None) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%dT%H:%M") if at else ""


def _form_of(campaign: Campaign) -> dict:
    goal = campaign.goal or {}
    return {"key": campaign.key, "name": campaign.name, "description": campaign.description,
            "placements": [p.key for p in campaign.placements.all()], "priority": str(campaign.priority),
            "purpose": campaign.purpose, "starts_at": _local_input(campaign.starts_at),
            "ends_at": _local_input(campaign.ends_at),
            "targeting": _pretty(campaign.targeting) if campaign.targeting is not None else "",
            "variants": [{"key": v.get("key", ""), "weight": _plain_number(v.get("weight", "")),
                          "content": _pretty(v.get("content", {}))} for v in campaign.variants],
            "caps": [{"count": str(c.get("count", "")), "per": c.get("per", "day")} for c in campaign.caps],
            "control_percent": _plain_number(round(campaign.control_share * 100, 6)),
            "allocation": campaign.allocation, "goal_event": goal.get("event", ""),
            "goal_within": goal.get("within", ""), "goal_where": _pretty(goal["where"]) if goal.get("where") else "",
            "exclusive_with": [c.key for c in campaign.exclusive_with.all()], **_trigger_form(campaign.trigger)}


def _trigger_form(trigger: dict | None) -> dict:
    trigger = trigger if isinstance(trigger, dict) else {}
    quiet = trigger.get("quiet_hours") or {}
    return {"trigger_segment": trigger.get("segment", ""), "trigger_placement": trigger.get("placement", ""),
            "trigger_destination": str(trigger.get("destination", "")),
            "trigger_payload": _pretty(trigger["payload"]) if trigger.get("payload") else "",
            "trigger_delay": trigger.get("delay", ""), "quiet_start": quiet.get("start", ""),
            "quiet_end": quiet.get("end", "")}


def _plain_number(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _pretty(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


NEW_FORM = {"key": "", "name": "", "description": "", "placements": [], "priority": "0", "purpose": "",
            "starts_at": "", "ends_at": "", "targeting": "",
            "variants": [{"key": "A", "weight": "50", "content": "{}"}, {"key": "B", "weight": "50", "content": "{}"}],
            "caps": [], "control_percent": "10", "allocation": "fixed", "goal_event": "", "goal_within": "7d",
            "goal_where": "", "exclusive_with": [], **_trigger_form(None)}


def _editor_context(campaign: Campaign | None, form: dict, error: DefinitionError | None = None) -> dict:
    # The first name of an error's path says which part of the form it belongs to (variants[1].weight: variants).
    section = re.split(r"[.\[]", error.field)[0] if error else ""
    return {"campaign": campaign, "form": form, "error": error, "error_section": section,
            "all_placements": selectors.placement_list(),
            "other_campaigns": Campaign.objects.exclude(pk=campaign.pk if campaign else None).order_by("key"),
            "purposes": [key for key, _ in purpose_choices()], "cap_periods": list(rules.CAP_PERIODS),
            "allocations": Campaign.Allocation.choices, "events": event_names_seen(),
            "segment_keys": sorted(segment_ids_by_key()), "destinations": destinations_all(),
            "payload_names": rules.PAYLOAD_ROOTS}


@login_required
@permission_required("campaigns.add_campaign", raise_exception=True)
def campaign_new(request):
    if request.method == "POST":
        saved, error, form = _save(request, None)
        if saved:
            messages.success(request, f"Campaign {saved.key} saved as a draft.")
            return redirect("campaign-report", campaign_id=saved.pk)
        return render(request, "campaigns/campaign_editor.html", _editor_context(None, form, error), status=400)
    return render(request, "campaigns/campaign_editor.html", _editor_context(None, dict(NEW_FORM)))


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = Campaign.objects.prefetch_related("placements", "exclusive_with").filter(pk=campaign_id).first()
    if campaign is None:
        raise Http404(f"No campaign #{campaign_id}.")
    return campaign


@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_edit(request, campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    if request.method == "POST":
        saved, error, form = _save(request, campaign)
        if saved:
            messages.success(request, f"Campaign {saved.key} saved.")
            return redirect("campaign-report", campaign_id=saved.pk)
        return render(request, "campaigns/campaign_editor.html", _editor_context(campaign, form, error), status=400)
    return render(request, "campaigns/campaign_editor.html", _editor_context(campaign, _form_of(campaign)))


@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
@require_POST
def campaign_transition(request, campaign_id: int, action: str):
    campaign = _campaign_or_404(campaign_id)
    if action not in definitions.TRANSITIONS:
        raise Http404(f"No action {action}.")
    try:
        campaign = definitions.campaign_transition(campaign=campaign, action=action)
    except definitions.TransitionRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Campaign {campaign.key} is {campaign.status}.")
    return redirect("campaign-report", campaign_id=campaign.pk)


@login_required
@permission_required("campaigns.view_campaign", raise_exception=True)
def campaign_report(request, campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    results = selectors.campaign_results(campaign=campaign)
    timeline = selectors.campaign_timeline(campaign_id=campaign.pk)
    days = sorted({row["day"] for row in timeline})
    arms = [row["variant"] for row in results["variants"]]
    series = {arm: {"exposures": [0] * len(days), "conversions": [0] * len(days)} for arm in arms}
    for row in timeline:
        at = days.index(row["day"])
        arm = series.setdefault(row["variant"], {"exposures": [0] * len(days), "conversions": [0] * len(days)})
        arm["exposures"][at], arm["conversions"][at] = row["exposures"], row["conversions"]
    uplift = [{"variant": row["variant"], "uplift": row["uplift"], "interval": row["uplift_interval"]}
              for row in results["variants"] if row["uplift"] is not None]
    send_counts, sends = selectors.campaign_sends(campaign_id=campaign.pk) if campaign.trigger else ({}, [])
    return render(request, "campaigns/campaign_report.html", {
        "send_counts": sorted(send_counts.items()), "sends": sends,
        "campaign": campaign, "results": results, "timeline": timeline, "actions": STATUS_ACTIONS[campaign.status],
        "recent": selectors.campaign_recent_exposures(campaign_id=campaign.pk),
        "chart": {"days": days, "series": series, "uplift": uplift, "baseline": results["baseline"]},
        "targeting_json": _pretty(campaign.targeting) if campaign.targeting is not None else "",
        "goal_json": _pretty(campaign.goal) if campaign.goal else ""})
