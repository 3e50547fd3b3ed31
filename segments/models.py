"""Segments: groups of profiles defined by rules (or a list), their memberships with history and reasons, and the
destinations their enter and exit events are delivered to."""
from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models

from profiles.models import Profile
from segments.outbound import public_destination_url


class Destination(models.Model):
    """A URL that receives signed segment.entered / segment.exited webhooks."""

    name = models.CharField(max_length=200)
    url = models.URLField(max_length=2000, validators=[public_destination_url])
    # The HMAC key of the signature header; write-only through the API.
    secret = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Segment(models.Model):
    class Mode(models.TextChoices):
        REALTIME = "realtime", "Realtime"
        BATCH = "batch", "Batch"
        STATIC = "static", "Static"

    class Status(models.TextChoices):
        PENDING = "pending", "Not computed yet"
        READY = "ready", "Ready"
        COMPUTING = "computing", "Computing"
        FAILED = "failed", "Failed"

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.BATCH)
    # One node of the rule language (segments.rules); {} for a static segment.
    definition = models.JSONField(default=dict, blank=True)
    # Keys of the segments the definition refers to, kept on save, so cycles and dependants are found without
    # parsing every definition.
    references = models.JSONField(default=list, blank=True, editable=False)
    destinations = models.ManyToManyField(Destination, blank=True, related_name="segments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    size = models.PositiveIntegerField(default=0)
    last_computed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class SegmentMembership(models.Model):
    """One stay of a profile in a segment: entered_at until exited_at (open while it is a member).

    A profile that leaves and comes back gets a new row, so the rows are the membership's history.
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    # Why the profile entered: each condition that held and the profile's own values that satisfied it,
    # [{"path": "definition.all[0]", "condition": "...", "value": ..., "held": true, "text": "..."}].
    reasons = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "profile"], condition=models.Q(exited_at__isnull=True),
                                    name="one_open_membership"),
        ]
        indexes = [
            models.Index(fields=["profile"], condition=models.Q(exited_at__isnull=True),
                         name="membership_open_by_profile"),
        ]

    def __str__(self):
        return f"{self.profile_id} in {self.segment_id}"


class StaticMember(models.Model):
    """An identifier listed in a static segment; it stands for whichever profile holds it when computed."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="static_members")
    identifier_type = models.CharField(max_length=32)
    value = models.CharField(max_length=512)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "identifier_type", "value"],
                                               name="static_member_once")]
        indexes = [models.Index(fields=["identifier_type", "value"], name="static_member_identifier")]

    def __str__(self):
        return f"{self.identifier_type}:{self.value}"


class SegmentSize(models.Model):
    """The segment's size after a recompute: the size-over-time chart."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="sizes")
    at = models.DateTimeField()
    size = models.PositiveIntegerField()
    entered = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["segment", "at"], name="segment_size_at")]


class Delivery(models.Model):
    """One enter or exit event for one destination, sent by Celery until it succeeds or runs out of tries."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        RETRYING = "retrying", "Retrying"
        DEAD = "dead", "Dead letter"
        SKIPPED = "skipped", "Not sent (no consent to share)"

    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="deliveries")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="deliveries")
    profile = models.ForeignKey(Profile, null=True, on_delete=models.SET_NULL, related_name="+")
    type = models.CharField(max_length=20)  # segment.entered | segment.exited
    occurred_at = models.DateTimeField()
    # The body as sent (and re-sent): the profile as it was when the event occurred.
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["destination", "-created_at"], name="delivery_by_destination"),
            models.Index(fields=["profile"], name="delivery_by_profile"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due",
                         condition=models.Q(status__in=["pending", "retrying"])),
        ]

    def __str__(self):
        return f"{self.type} {self.delivery_id}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]


# What segments learn from profiles: clustering runs, predictive models, the item catalog and recommendations.


class ClusteringRun(models.Model):
    """One K-Means clustering of the live profiles on chosen features; each cluster becomes a static segment."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    # Computed trait keys, or "events.<event name>" for a profile's count of that event.
    features = models.JSONField()
    k_min = models.PositiveSmallIntegerField(default=2)
    k_max = models.PositiveSmallIntegerField(default=8)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    k = models.PositiveSmallIntegerField(null=True, blank=True)
    # {"2": 0.41, "3": 0.57, ...}: the silhouette score of every k tried.
    silhouettes = models.JSONField(default=dict, blank=True)
    profiles = models.PositiveIntegerField(default=0)
    # Profiles left out because they lack one of the features.
    skipped = models.PositiveIntegerField(default=0)
    silhouette_sample = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Clustering {self.pk}"


class Cluster(models.Model):
    run = models.ForeignKey(ClusteringRun, on_delete=models.CASCADE, related_name="clusters")
    number = models.PositiveSmallIntegerField()
    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    size = models.PositiveIntegerField()
    # {"feature": value}: the K-Means centre in the features' own units.
    centroid = models.JSONField()
    description = models.CharField(max_length=300)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="cluster_number_once")]


class PredictiveModel(models.Model):
    """A probability that a person does (or, negated, does not do) the target event within the horizon; its
    promoted version's scores are the computed trait named by the key."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    class Algorithm(models.TextChoices):
        AUTO = "auto", "The better on validation"
        GRADIENT_BOOSTING = "gradient_boosting", "Gradient boosting"
        LOGISTIC_REGRESSION = "logistic_regression", "Logistic regression"

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    target_event = models.CharField(max_length=200)
    horizon_days = models.PositiveSmallIntegerField(default=30)
    negate = models.BooleanField(default=False)
    algorithm = models.CharField(max_length=20, choices=Algorithm.choices, default=Algorithm.AUTO)
    retrain_every_days = models.PositiveSmallIntegerField(default=7)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_trained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class ModelVersion(models.Model):
    """One training: its metrics on the time-based holdout, and whether it replaced the scores."""

    model = models.ForeignKey(PredictiveModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    trained_at = models.DateTimeField()
    algorithm = models.CharField(max_length=20)
    # Features as of train_cutoff, labels from the horizon after it; the holdout is the same a horizon later.
    train_cutoff = models.DateTimeField()
    holdout_cutoff = models.DateTimeField()
    train_rows = models.PositiveIntegerField()
    holdout_rows = models.PositiveIntegerField()
    auc = models.FloatField(null=True)
    brier = models.FloatField(null=True)
    base_rate = models.FloatField(null=True)
    baseline_auc = models.FloatField(null=True)
    # The promoted version's AUC on this version's holdout: the comparison that decided promotion.
    incumbent_auc = models.FloatField(null=True, blank=True)
    # [{"feature": "recency_days", "importance": 0.12}, ...]: the holdout AUC lost when the feature is shuffled.
    feature_importances = models.JSONField(default=list)
    # The scores this training wrote: counts in ten bins of width 0.1, how many, and the version whose model
    # wrote them (this one when promoted, else the one in use, scoring fresh features).
    score_histogram = models.JSONField(default=list)
    promoted = models.BooleanField(default=False)
    scored = models.PositiveIntegerField(default=0)
    scored_by = models.PositiveIntegerField(null=True, blank=True)
    duration_s = models.FloatField(default=0)
    # Seconds per step: {"features_s", "fit_s", "score_s", "write_s"}.
    timings = models.JSONField(default=dict)
    # The fitted estimator (joblib), so a schedule can score again without training.
    artifact = models.BinaryField(editable=False)

    class Meta:
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="model_version_once")]


class Item(models.Model):
    """A product of the catalog: from the recommendation events' properties, or the items API (which wins)."""

    class Origin(models.TextChoices):
        EVENTS = "events", "Seen in events"
        API = "api", "Catalog (API or import)"

    # The Segment e-commerce spec's product_id.
    item_id = models.CharField(max_length=200, unique=True)
    name = models.CharField(max_length=500, blank=True, default="")
    category = models.CharField(max_length=300, blank=True, default="")
    brand = models.CharField(max_length=200, blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    url = models.URLField(max_length=2000, blank=True, default="")
    image_url = models.URLField(max_length=2000, blank=True, default="")
    # Items no longer sold are never recommended.
    active = models.BooleanField(default=True)
    origin = models.CharField(max_length=6, choices=Origin.choices, default=Origin.API)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item_id"]

    def __str__(self):
        return self.item_id


class ItemNeighbours(models.Model):
    """An item's precomputed most similar items (the hybrid of co-occurrence and content), best first."""

    item = models.OneToOneField(Item, primary_key=True, on_delete=models.CASCADE, related_name="+")
    neighbours = ArrayField(models.IntegerField())
    scores = ArrayField(models.FloatField())


class Recommendations(models.Model):
    """A person's precomputed top list, best first; `bought` lists the items they bought, so a read can leave
    them out (or not) without another query."""

    profile = models.OneToOneField(Profile, primary_key=True, on_delete=models.CASCADE, related_name="+")
    items = ArrayField(models.IntegerField())
    scores = ArrayField(models.FloatField())
    bought = ArrayField(models.IntegerField(), default=list)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "recommendations"


class RecommenderRun(models.Model):
    """One refresh of the recommendations: what it trained on, its offline evaluation, and the popular items
    that people without history (or without consent to personalisation) get."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    people = models.PositiveIntegerField(default=0)
    items = models.PositiveIntegerField(default=0)
    interactions = models.PositiveIntegerField(default=0)
    # {"hybrid": {"hit_rate_at_10": .., "ndcg_at_10": ..}, "collaborative": .., "content": .., "popularity": ..}
    evaluation = models.JSONField(default=dict, blank=True)
    evaluated_people = models.PositiveIntegerField(default=0)
    popular = ArrayField(models.IntegerField(), default=list)
    duration_s = models.FloatField(null=True, blank=True)
    # Seconds per step: {"read_s", "evaluate_s", "train_s", "write_s"}.
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
