"""The segments screens: the list, the builder (nested conditions edited visually, the JSON beside them, the live
count), a segment's page (size over time, members, deliveries), and what is learned from profiles: clusterings,
predictive models and the recommendations' evaluation."""
from __future__ import annotations

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from consent.selectors import purpose_choices
from profiles.common.queueing import enqueue_after_commit
from profiles.selectors import event_names_seen, trait_keys_seen
from segments import rules, selectors
from segments.models import ClusteringRun, Destination, PredictiveModel, RecommenderRun, Segment
from segments.services import clustering, definitions, prediction
from segments.services.recommendations import REFRESH_TASK

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


# ------------------------------------------------------------------------------------- what was learned


@login_required
@permission_required("segments.view_clusteringrun", raise_exception=True)
def clustering_list(request):
    error = None
    form = {"features": "recency_days, frequency_orders, monetary_value, engagement_score", "k_min": "2",
            "k_max": "8"}
    if request.method == "POST":
        if not request.user.has_perm("segments.add_clusteringrun"):
            raise PermissionDenied
        form = {name: request.POST.get(name, "").strip() for name in form}
        features = [f.strip() for f in form["features"].split(",") if f.strip()]
        try:
            k_min, k_max = (int(form["k_min"]) if form["k_min"].isdigit() else form["k_min"],
                            int(form["k_max"]) if form["k_max"].isdigit() else form["k_max"])
            run = clustering.clustering_queue(features=features, k_min=k_min, k_max=k_max)
        except rules.DefinitionError as exc:
            error = exc
        else:
            messages.success(request, f"Clustering {run.pk} is queued.")
            return redirect("segment-clustering-detail", run_id=run.pk)
    runs = ClusteringRun.objects.all()[:50]
    return render(request, "segments/clustering_list.html", {
        "runs": runs, "form": form, "error": error, "computed": trait_keys_seen(computed=True)},
        status=400 if error else 200)


@login_required
@permission_required("segments.view_clusteringrun", raise_exception=True)
def clustering_detail(request, run_id: int):
    run = ClusteringRun.objects.prefetch_related("clusters__segment").filter(pk=run_id).first()
    if run is None:
        raise Http404(f"No clustering #{run_id}.")
    clusters = list(run.clusters.all())
    chart = {"k": list(run.silhouettes), "silhouettes": list(run.silhouettes.values()),
             "clusters": [f"{c.number}: {c.description}" for c in clusters], "sizes": [c.size for c in clusters],
             "features": run.features,
             "centroids": [[c.centroid.get(f) for f in run.features] for c in clusters]}
    return render(request, "segments/clustering_detail.html", {"run": run, "clusters": clusters, "chart": chart})


@login_required
@permission_required("segments.view_predictivemodel", raise_exception=True)
def model_list(request):
    error, form = None, {"key": "", "target_event": "Order Completed", "horizon_days": "30", "negate": False}
    if request.method == "POST":
        if not request.user.has_perm("segments.add_predictivemodel"):
            raise PermissionDenied
        form = {"key": request.POST.get("key", "").strip(), "target_event": request.POST.get("target_event", ""),
                "horizon_days": request.POST.get("horizon_days", ""), "negate": bool(request.POST.get("negate"))}
        horizon = int(form["horizon_days"]) if form["horizon_days"].isdigit() else form["horizon_days"]
        try:
            if PredictiveModel.objects.filter(key=form["key"]).exists():
                raise rules.DefinitionError(f'a model with the key "{form["key"]}" exists', "key")
            model = prediction.model_create(key=form["key"], target_event=form["target_event"].strip(),
                                            horizon_days=horizon, negate=form["negate"])
        except rules.DefinitionError as exc:
            error = exc
        else:
            messages.success(request, f"Model {model.key} saved; its first training is queued.")
            return redirect("segment-model-detail", key=model.key)
    models = selectors.models_with_versions()
    latest_runs = RecommenderRun.objects.all()[:5]
    return render(request, "segments/model_list.html", {
        "models": models, "form": form, "error": error, "events": event_names_seen(),
        "recommender_runs": latest_runs, "methods": ["hybrid", "collaborative", "content", "popularity"]},
        status=400 if error else 200)


@login_required
@permission_required("segments.view_predictivemodel", raise_exception=True)
def model_detail(request, key: str):
    model = PredictiveModel.objects.filter(key=key).first()
    if model is None:
        raise Http404(f"No model {key}.")
    versions = list(model.versions.defer("artifact"))
    # The version in use explains the scores; the latest training wrote them (with the version in use, when it
    # did worse).
    shown = next((v for v in versions if v.promoted), versions[0] if versions else None)
    latest = versions[0] if versions else None
    chart = {"importances": shown.feature_importances if shown else [],
             "histogram": latest.score_histogram if latest else [],
             "bins": [f"{i / 10:.1f}–{(i + 1) / 10:.1f}" for i in range(10)],
             "versions": [v.version for v in reversed(versions)], "auc": [v.auc for v in reversed(versions)],
             "baseline": [v.baseline_auc for v in reversed(versions)]}
    return render(request, "segments/model_detail.html", {"model": model, "versions": versions, "shown": shown,
                                                          "latest": latest, "chart": chart})


@login_required
@permission_required("segments.change_predictivemodel", raise_exception=True)
@require_POST
def model_retrain(request, key: str):
    model = PredictiveModel.objects.filter(key=key).first()
    if model is None:
        raise Http404(f"No model {key}.")
    prediction.model_retrain(model=model)
    messages.success(request, f"A training of {model.key} is queued.")
    return redirect("segment-model-detail", key=model.key)


@login_required
@permission_required("segments.add_recommenderrun", raise_exception=True)
@require_POST
def recommendations_refresh(request):
    enqueue_after_commit(REFRESH_TASK)
    messages.success(request, "A refresh of the recommendations is queued.")
    return redirect("segment-models")
