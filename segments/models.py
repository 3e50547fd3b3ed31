"""Segments: groups of profiles defined by rules (or a list), their memberships with history and reasons, and the
destinations their enter and exit events are delivered to."""
from __future__ import annotations

import uuid

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
