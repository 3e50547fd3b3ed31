"""The segments screens: the list, the builder (nested conditions edited visually, the JSON beside them, the live
count), and a segment's page (size over time, members, deliveries)."""
from __future__ import annotations

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from consent.selectors import purpose_choices
from profiles.common.queueing import enqueue_after_commit
from profiles.selectors import event_names_seen, trait_keys_seen
from segments import rules, selectors
from segments.models import Destination, Segment
from segments.services import definitions

EMPTY_DEFINITION = {"all": [{"trait": "plan", "op": "eq", "value": "pro"}]}


@login_required
@permission_required("segments.view_segment", raise_exception=True)
def segment_list(request):
    segments = selectors.segment_find(query=request.GET.get("q", ""), mode=request.GET.get("mode", ""))
    return render(request, "segments/segment_list.html", {"segments": segments, "q": request.GET.get("q", ""),
                                                          "modes": Segment.Mode.choices})


def _builder_context(segment: Segment | None, form: dict, error: rules.DefinitionError | None = None) -> dict:
    text = form.get("definition_text") or orjson.dumps(form.get("definition") or EMPTY_DEFINITION,
                                                       option=orjson.OPT_INDENT_2).decode()
    return {
        "segment": segment, "form": form, "error": error, "modes": Segment.Mode.choices, "definition_text": text,
        "error_json": {"field": error.field, "message": error.message} if error else None,
        "all_destinations": Destination.objects.order_by("name"),
        "vocabulary": {
            "events": event_names_seen(), "traits": trait_keys_seen(), "computed": trait_keys_seen(computed=True),
            "purposes": [key for key, _ in purpose_choices()],
            "segments": list(Segment.objects.exclude(pk=segment.pk if segment else None).order_by("key")
                             .values_list("key", flat=True)),
            "identifiers": ["user_id", "anonymous_id", "email", "phone"],
        },
    }


def _form_from(request) -> dict:
    text = request.POST.get("definition", "")
    try:
        definition = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        definition = None
    return {"key": request.POST.get("key", "").strip(), "name": request.POST.get("name", "").strip(),
            "description": request.POST.get("description", ""), "mode": request.POST.get("mode", "batch"),
            "definition": definition, "definition_text": text,
            "destinations": [int(d) for d in request.POST.getlist("destinations") if d.isdigit()]}


def _save(request, segment: Segment | None):
    form = _form_from(request)
    if form["definition"] is None and form["mode"] != Segment.Mode.STATIC:
        return None, rules.DefinitionError("the definition is not valid JSON", "definition"), form
    destinations = list(Destination.objects.filter(pk__in=form["destinations"]))
    try:
        if segment is None:
            if not form["key"] or not form["name"]:
                return None, rules.DefinitionError("a segment needs a key and a name", "key"), form
            if Segment.objects.filter(key=form["key"]).exists():
                return None, rules.DefinitionError(f'a segment with the key "{form["key"]}" exists', "key"), form
            saved = definitions.segment_create(key=form["key"], name=form["name"], mode=form["mode"],
                                               definition=form["definition"], description=form["description"],
                                               destinations=destinations)
        else:
            saved = definitions.segment_update(segment=segment, name=form["name"] or segment.name,
                                               description=form["description"], mode=form["mode"],
                                               definition=form["definition"], destinations=destinations)
    except rules.DefinitionError as exc:
        return None, exc, form
    return saved, None, form


@login_required
@permission_required("segments.add_segment", raise_exception=True)
def segment_new(request):
    if request.method == "POST":
        saved, error, form = _save(request, None)
        if saved:
            messages.success(request, f"Segment {saved.key} saved; its members are being computed.")
            return redirect("segment-detail", segment_id=saved.pk)
        return render(request, "segments/segment_builder.html", _builder_context(None, form, error), status=400)
    form = {"key": "", "name": "", "description": "", "mode": "batch", "definition": EMPTY_DEFINITION,
            "destinations": []}
    return render(request, "segments/segment_builder.html", _builder_context(None, form))


def _segment_or_404(segment_id: int) -> Segment:
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise Http404(f"No segment #{segment_id}.")
    return segment


@login_required
@permission_required("segments.change_segment", raise_exception=True)
def segment_edit(request, segment_id: int):
    segment = _segment_or_404(segment_id)
    if request.method == "POST":
        saved, error, form = _save(request, segment)
        if saved:
            messages.success(request, f"Segment {saved.key} saved.")
            return redirect("segment-detail", segment_id=saved.pk)
        return render(request, "segments/segment_builder.html", _builder_context(segment, form, error), status=400)
    form = {"key": segment.key, "name": segment.name, "description": segment.description, "mode": segment.mode,
            "definition": segment.definition or EMPTY_DEFINITION,
            "destinations": list(segment.destinations.values_list("pk", flat=True))}
    return render(request, "segments/segment_builder.html", _builder_context(segment, form))


@login_required
@permission_required("segments.view_segment", raise_exception=True)
def segment_detail(request, segment_id: int):
    segment = _segment_or_404(segment_id)
    history = list(selectors.segment_history(segment=segment).reverse()[:500])[::-1]
    members = Paginator(selectors.segment_members(segment=segment).order_by("-entered_at", "-id"), 50).get_page(
        request.GET.get("page", 1))
    deliveries = segment.deliveries.select_related("destination").order_by("-created_at")[:20]
    chart = {"labels": [p.at.isoformat() for p in history], "sizes": [p.size for p in history]}
    return render(request, "segments/segment_detail.html", {
        "segment": segment, "history": history, "members": members, "deliveries": deliveries, "chart": chart,
        "definition_json": orjson.dumps(segment.definition, option=orjson.OPT_INDENT_2).decode(),
        "conditions": [(path, rules.describe(leaf)) for path, leaf in _leaves(segment)]})


def _leaves(segment: Segment):
    if segment.mode == Segment.Mode.STATIC:
        return []
    try:
        return rules.leaves(rules.parse(segment.definition))
    except rules.DefinitionError:
        return []


@login_required
@permission_required("segments.change_segment", raise_exception=True)
@require_POST
def segment_refresh(request, segment_id: int):
    segment = _segment_or_404(segment_id)
    enqueue_after_commit("segments.recompute", segment.pk)
    messages.success(request, f"A recompute of {segment.key} is queued.")
    return redirect("segment-detail", segment_id=segment.pk)
