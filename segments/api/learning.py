"""Learning API: clustering runs, predictive models with their versions, the item catalog, recommendations for a
person and similar items, and the recommender's refreshes with their offline evaluation. Thin views: parse, call
one service or selector, render."""
from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, Conflict, error_response
from profiles.common.fields import NO_NUL, NOT_BLANK
from profiles.common.permissions import RoleModelPermissions
from profiles.common.queueing import enqueue_after_commit
from profiles.selectors import profile_live_id
from segments import rules, selectors
from segments.models import (Cluster, ClusteringRun, Item, ModelVersion, PredictiveModel, Recommendations,
                             RecommenderRun)
from segments.services import clustering, prediction, recommendations

INVALID = error_response('The request is not valid: {"code": "invalid_request", "message", "field"}.')
NO_RUN = error_response("No such clustering run.")
NO_MODEL = error_response("No such model.")
NO_ITEM = error_response("No such item.")
NO_PROFILE = error_response("No such profile.")
TAKEN = error_response('A model already has this key ("key_taken").')


def _invalid(exc: rules.DefinitionError) -> Response:
    return Response({"code": "invalid_request", "message": exc.message, "field": exc.field},
                    status=status.HTTP_400_BAD_REQUEST)


class ListQuerySerializer(serializers.Serializer):
    k = serializers.IntegerField(min_value=1, max_value=selectors.RECOMMENDATIONS_MAX, default=10,
                                 help_text="How many items.")


class RecommendationsQuerySerializer(ListQuerySerializer):
    include_bought = serializers.BooleanField(default=False, help_text="Keep items the person already bought.")


class LearningView(generics.GenericAPIView):
    """Base of the learning endpoints: the role needs the permission on the view's model for the method; bodies
    are JSON."""

    permission_classes = [RoleModelPermissions]
    parser_classes = [JSONParser]


# ----------------------------------------------------------------------------------------------- clustering


class ClusterSerializer(serializers.ModelSerializer):
    segment_key = serializers.CharField(source="segment.key", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Cluster
        fields = ["number", "segment_id", "segment_key", "size", "centroid", "description"]


class ClusteringRunSerializer(serializers.ModelSerializer):
    clusters = ClusterSerializer(many=True, read_only=True)
    silhouette = serializers.JSONField(source="silhouettes", read_only=True,
                                       help_text='The silhouette score of every k tried: {"2": 0.41, ...}.')

    class Meta:
        model = ClusteringRun
        fields = ["id", "status", "features", "k_min", "k_max", "k", "silhouette", "profiles", "skipped",
                  "silhouette_sample", "duration_s", "error", "created_at", "finished_at", "clusters"]


class ClusteringRequestSerializer(serializers.Serializer):
    features = serializers.ListField(child=serializers.CharField(max_length=200, validators=[NOT_BLANK, NO_NUL]),
                                     min_length=1, max_length=clustering.MAX_FEATURES,
                                     help_text='Computed trait keys, or "events.<event name>" for event counts.')
    k_min = serializers.IntegerField(min_value=2, max_value=20, default=2)
    k_max = serializers.IntegerField(min_value=2, max_value=20, default=8)


class ClusteringListView(LearningView, generics.ListAPIView):
    queryset = ClusteringRun.objects.prefetch_related("clusters__segment")
    serializer_class = ClusteringRunSerializer

    @extend_schema(tags=["learning"], operation_id="clustering_list",
                   responses={200: ClusteringRunSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request, *args, **kwargs):
        """Clustering runs, newest first."""
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["learning"], operation_id="clustering_create", request=ClusteringRequestSerializer,
                   responses={202: ClusteringRunSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """Queues a clustering: features scaled robustly, K-Means for each k from k_min to k_max, k chosen by
        silhouette; each cluster becomes a static segment."""
        body = ClusteringRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = clustering.clustering_queue(**body.validated_data)
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response(ClusteringRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ClusteringDetailView(LearningView):
    queryset = ClusteringRun.objects.all()
    serializer_class = ClusteringRunSerializer

    @extend_schema(tags=["learning"], operation_id="clustering_retrieve",
                   responses={200: ClusteringRunSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NO_RUN})
    def get(self, request, run_id: int):
        """A run: its status, the silhouette of every k, and each cluster's segment, size, centre (in the
        features' units) and description."""
        run = ClusteringRun.objects.prefetch_related("clusters__segment").filter(pk=run_id).first()
        if run is None:
            raise NotFound(f"No clustering run {run_id}.")
        return Response(ClusteringRunSerializer(run).data)


# ----------------------------------------------------------------------------------------- predictive models


class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["version", "trained_at", "algorithm", "train_cutoff", "holdout_cutoff", "train_rows",
                  "holdout_rows", "auc", "brier", "base_rate", "baseline_auc", "incumbent_auc",
                  "feature_importances", "score_histogram", "promoted", "scored", "scored_by", "duration_s"]


class ModelSerializer(serializers.ModelSerializer):
    versions = VersionSerializer(many=True, read_only=True)

    class Meta:
        model = PredictiveModel
        fields = ["key", "name", "target_event", "horizon_days", "negate", "algorithm", "retrain_every_days",
                  "status", "last_error", "created_at", "last_trained_at", "versions"]
        read_only_fields = ["status", "last_error", "created_at", "last_trained_at"]


class ModelCreateSerializer(serializers.Serializer):
    key = serializers.SlugField(max_length=100, help_text="Also the computed trait the scores are written to.")
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True, validators=[NO_NUL],
                                 help_text="Blank: made from the key.")
    target_event = serializers.CharField(max_length=200, validators=[NOT_BLANK, NO_NUL])
    horizon_days = serializers.IntegerField(min_value=1, max_value=365, default=30)
    negate = serializers.BooleanField(default=False,
                                      help_text="Score the chance of NOT doing the event (churn risk).")
    algorithm = serializers.ChoiceField(choices=PredictiveModel.Algorithm.choices,
                                        default=PredictiveModel.Algorithm.AUTO)
    retrain_every_days = serializers.IntegerField(min_value=1, max_value=365, default=7)


class ModelListView(LearningView, generics.ListAPIView):
    queryset = PredictiveModel.objects.all()

    def get_queryset(self):
        return selectors.models_with_versions()
    serializer_class = ModelSerializer

    @extend_schema(tags=["learning"], operation_id="models_list",
                   responses={200: ModelSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request, *args, **kwargs):
        """Predictive models with their versions and metrics."""
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["learning"], operation_id="models_create", request=ModelCreateSerializer,
                   responses={202: ModelSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN, 409: TAKEN})
    def post(self, request):
        """Creates a model and queues its first training."""
        body = ModelCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if PredictiveModel.objects.filter(key=body.validated_data["key"]).exists():
            raise Conflict(code="key_taken", message=f'A model already has the key "{body.validated_data["key"]}".')
        try:
            model = prediction.model_create(**body.validated_data)
        except rules.DefinitionError as exc:
            return _invalid(exc)
        except IntegrityError:
            raise Conflict(code="key_taken", message="A model already has this key.") from None
        return Response(ModelSerializer(model).data, status=status.HTTP_202_ACCEPTED)


class OneModelView(LearningView):
    queryset = PredictiveModel.objects.all()
    serializer_class = ModelSerializer

    def model(self, key: str) -> PredictiveModel:
        model = selectors.models_with_versions().filter(key=key).first()
        if model is None:
            raise NotFound(f'No model "{key}".')
        return model


class ModelDetailView(OneModelView):
    @extend_schema(tags=["learning"], operation_id="models_retrieve",
                   responses={200: ModelSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NO_MODEL})
    def get(self, request, key: str):
        """The model: status and, per version, AUC, Brier score, base rate, the recency-only baseline's AUC,
        feature importances and the score distribution."""
        return Response(ModelSerializer(self.model(key)).data)

    @extend_schema(tags=["learning"], operation_id="models_destroy",
                   responses={204: None, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NO_MODEL})
    def delete(self, request, key: str):
        """Deletes the model, its versions and its scores (the computed trait)."""
        prediction.model_delete(model=self.model(key))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelRetrainView(OneModelView):
    @extend_schema(tags=["learning"], operation_id="models_retrain", request=None,
                   responses={202: ModelSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NO_MODEL})
    def post(self, request, key: str):
        """Queues a training now; the new version replaces the scores only if it is not worse on the holdout."""
        model = self.model(key)
        prediction.model_retrain(model=model)
        return Response(ModelSerializer(self.model(key)).data, status=status.HTTP_202_ACCEPTED)


# ---------------------------------------------------------------------------------------------------- items


class ItemSerializer(serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True, allow_null=True,
                                     coerce_to_string=False)
    # Text, not format "uri": empty when the catalog has none.
    url = serializers.CharField(read_only=True)
    image_url = serializers.CharField(read_only=True)

    class Meta:
        model = Item
        fields = ["item_id", "name", "category", "brand", "price", "url", "image_url", "active", "origin",
                  "updated_at"]
        read_only_fields = fields


class ItemInputSerializer(serializers.Serializer):
    item_id = serializers.CharField(max_length=200, validators=[NOT_BLANK, NO_NUL],
                                    help_text="The e-commerce spec's product_id.")
    name = serializers.CharField(max_length=500, required=False, allow_blank=True, validators=[NO_NUL])
    category = serializers.CharField(max_length=300, required=False, allow_blank=True, validators=[NO_NUL],
                                     help_text='A path such as "Apparel > Shoes".')
    brand = serializers.CharField(max_length=200, required=False, allow_blank=True, validators=[NO_NUL])
    # Any number of decimals, rounded to cents.
    price = serializers.DecimalField(max_digits=None, decimal_places=None, min_value=0,
                                     max_value=Decimal("9999999999.99"), required=False, allow_null=True,
                                     coerce_to_string=False)
    url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    image_url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, help_text="Items no longer sold are never recommended.")


class ItemUpdateSerializer(ItemInputSerializer):
    item_id = None


class ItemsBulkSerializer(serializers.Serializer):
    items = serializers.ListField(child=ItemInputSerializer(), min_length=1, max_length=10_000)


class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


def _item_fields(data: dict) -> dict:
    return {k: (str(v) if k == "price" and v is not None else v) for k, v in data.items()}


class ItemListView(LearningView, generics.ListAPIView):
    queryset = Item.objects.all()
    serializer_class = ItemSerializer

    def get_queryset(self):
        query = self.request.query_params.get("q", "")
        items = Item.objects.all()
        return items.filter(item_id__icontains=query) | items.filter(name__icontains=query) if query else items

    @extend_schema(tags=["learning"], operation_id="items_list",
                   parameters=[OpenApiParameter("q", str, description="Part of the item id or name.")],
                   responses={200: ItemSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request, *args, **kwargs):
        """The catalog, by item id."""
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["learning"], operation_id="items_create", request=ItemInputSerializer,
                   responses={201: ItemSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """Creates an item, or updates the one with this item_id (the catalog's values then win over events')."""
        body = ItemInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            recommendations.items_upsert(items=[_item_fields(body.validated_data)])
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response(ItemSerializer(Item.objects.get(item_id=body.validated_data["item_id"].strip())).data,
                        status=status.HTTP_201_CREATED)


class ItemBulkView(LearningView):
    queryset = Item.objects.all()
    serializer_class = ItemsBulkSerializer

    @extend_schema(tags=["learning"], operation_id="items_bulk", request=ItemsBulkSerializer,
                   responses={200: BulkResultSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """Creates or updates up to 10,000 items by item_id, all or nothing."""
        body = ItemsBulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            created, updated = recommendations.items_upsert(
                items=[_item_fields(item) for item in body.validated_data["items"]])
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response({"created": created, "updated": updated})


class OneItemView(LearningView):
    """Base of the endpoints of one item; each declares only its own methods."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer

    def item(self, item_id: str) -> Item:
        item = Item.objects.filter(item_id=item_id).first()
        if item is None:
            raise NotFound(f'No item "{item_id}".')
        return item


class ItemDetailView(OneItemView):
    @extend_schema(tags=["learning"], operation_id="items_retrieve",
                   responses={200: ItemSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NO_ITEM})
    def get(self, request, item_id: str):
        return Response(ItemSerializer(self.item(item_id)).data)

    @extend_schema(tags=["learning"], operation_id="items_partial_update", request=ItemUpdateSerializer,
                   responses={200: ItemSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NO_ITEM})
    def patch(self, request, item_id: str):
        """Changes some of the item's fields (its item_id stays)."""
        item = self.item(item_id)
        body = ItemUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = _item_fields(body.validated_data)
        try:
            recommendations.items_upsert(items=[{"item_id": item.item_id, **fields}])
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response(ItemSerializer(self.item(item_id)).data)


class RecommendedItemSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    brand = serializers.CharField()
    price = serializers.FloatField(allow_null=True)
    url = serializers.CharField()
    image_url = serializers.CharField()
    score = serializers.FloatField(allow_null=True)


class SimilarItemsSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    similar = RecommendedItemSerializer(many=True)


class ItemSimilarView(OneItemView):
    serializer_class = SimilarItemsSerializer

    @extend_schema(tags=["learning"], operation_id="items_similar", parameters=[ListQuerySerializer],
                   responses={200: SimilarItemsSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NO_ITEM})
    def get(self, request, item_id: str):
        """The item's most similar items, best first (bought together, viewed together, described alike)."""
        query = ListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        similar = selectors.items_similar(item_id=item_id, k=query.validated_data["k"])
        if not similar:
            self.item(item_id)
        return Response({"item_id": item_id, "similar": [item.as_json() for item in similar]})


# ------------------------------------------------------------------------------------------ recommendations


class ProfileRecommendationsSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField()
    basis = serializers.ChoiceField(choices=["personal", "popular", "none"], help_text=(
        "personal: learned from the person's own behaviour; popular: they have no history yet or do not allow "
        "personalisation; none: nothing has been learned yet."))
    items = RecommendedItemSerializer(many=True)


class ProfileRecommendationsView(LearningView):
    queryset = Recommendations.objects.all()
    serializer_class = ProfileRecommendationsSerializer

    @extend_schema(tags=["learning"], operation_id="profiles_recommendations",
                   parameters=[RecommendationsQuerySerializer],
                   responses={200: ProfileRecommendationsSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED,
                              403: FORBIDDEN, 404: NO_PROFILE})
    def get(self, request, profile_id: int):
        """The person's top items, best first; a merged profile's are its survivor's."""
        query = RecommendationsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        person = profile_live_id(profile_id=profile_id)
        if person is None:
            raise NotFound(f"No profile {profile_id}.")
        found = selectors.recommendations_for(profile_id=person, **query.validated_data)
        return Response({"profile_id": person, "basis": found.basis, "items": [i.as_json() for i in found.items]})


class RecommenderRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecommenderRun
        fields = ["id", "status", "started_at", "finished_at", "people", "items", "interactions", "evaluation",
                  "evaluated_people", "duration_s", "error"]


class RecommenderRunListView(LearningView, generics.ListAPIView):
    queryset = RecommenderRun.objects.all()
    serializer_class = RecommenderRunSerializer

    @extend_schema(tags=["learning"], operation_id="recommendations_runs",
                   responses={200: RecommenderRunSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request, *args, **kwargs):
        """Refreshes of the recommendations, newest first, each with its offline evaluation: hit rate and NDCG
        at 10 of the hybrid, collaborative, content-based and popularity methods on a time split."""
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["learning"], operation_id="recommendations_refresh", request=None,
                   responses={202: None, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """Queues a refresh of every top list (a refresh already running makes this one return at once)."""
        enqueue_after_commit(recommendations.REFRESH_TASK)
        return Response(status=status.HTTP_202_ACCEPTED)
