"""Campaigns: placements (where content goes), campaigns (who gets which content there), the programme's settings,
and what was shown to whom (exposures) and what it led to (conversions)."""
from __future__ import annotations

from django.db import models

from profiles.models import Profile


class Placement(models.Model):
    class Channel(models.TextChoices):
        WEB = "web", "Web"
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        PUSH = "push", "Push"

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    channel = models.CharField(max_length=5, choices=Channel.choices, default=Channel.WEB)
    # What a person gets here when no campaign applies (and what a control or holdout person gets).
    default_content = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ENDED = "ended", "Ended"

    class Allocation(models.TextChoices):
        FIXED = "fixed", "Fixed weights"
        THOMPSON = "thompson", "Thompson sampling"

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.DRAFT)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    placements = models.ManyToManyField(Placement, related_name="campaigns")
    # A node of the segments rule language, which may also test the request's context; null: everyone.
    targeting = models.JSONField(null=True, blank=True)
    priority = models.IntegerField(default=0)
    # The consent purpose a person must allow; blank: the placements' channel decides (campaigns.rules).
    purpose = models.CharField(max_length=100, blank=True, default="")
    # [{"count": 3, "per": "day"}]: at most `count` exposures to one person per hour, day, week or lifetime.
    caps = models.JSONField(default=list, blank=True)
    # [{"key": "A", "weight": 50, "content": {...}}]; weights add up to 100.
    variants = models.JSONField(default=list)
    # The share (0 to 1) of eligible people who get the placement's default content, counted as control.
    control_share = models.FloatField(default=0.0)
    allocation = models.CharField(max_length=8, choices=Allocation.choices, default=Allocation.FIXED)
    # {"event": "Order Completed", "where": [...], "within": "7d"}: what counts as a conversion of an exposure.
    goal = models.JSONField(null=True, blank=True)
    exclusive_with = models.ManyToManyField("self", symmetrical=True, blank=True)
    # {"segment": "cart-abandoners", "placement": "email_cart", "destination": 3, "payload": {...}, "delay": "1h",
    # "quiet_hours": {"start": "21:00", "end": "08:00"}}: on entering the segment, a person's content is sent to
    # the destination (a webhook) instead of waiting to be asked for (campaigns.rules.parse_trigger).
    trigger = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "created_at", "id"]

    def __str__(self):
        return self.key


class ProgrammeSettings(models.Model):
    """One row: what holds across all campaigns."""

    # The share (0 to 1) of all people, by a stable hash, who get no campaign at all.
    holdout_share = models.FloatField(default=0.0)
    # {"email": {"count": 3, "per": "week"}}: no person gets more from all campaigns of a channel.
    channel_caps = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Moved by every change of placements, campaigns or these settings when there is no Redis to hold it: each
    # process reloads its campaigns when it sees a new one.
    snapshot_version = models.BigIntegerField(default=0)


class Exposure(models.Model):
    """Content shown to a person as the outcome of a decision: a campaign's variant, its control, or the global
    holdout (campaign null)."""

    decision_id = models.UUIDField(unique=True)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="exposures")
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="exposures")
    # Null for a first visit: the person is known only by the id the request sent (`subject`).
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # "user_id:<id>" or "anonymous_id:<id>" as sent: the id allocation hashes and that links a first visit to the
    # person the pipeline later resolves.
    subject = models.CharField(max_length=300)
    variant = models.CharField(max_length=50)
    channel = models.CharField(max_length=5, choices=Placement.Channel.choices)
    shown_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["profile", "shown_at"], name="exposure_by_profile"),
            models.Index(fields=["subject", "shown_at"], name="exposure_by_subject"),
            models.Index(fields=["campaign", "shown_at"], name="exposure_by_campaign"),
            # What the pipeline probes for every id its events send: first visits' exposures, waiting for a profile.
            models.Index(fields=["subject"], name="exposure_without_profile", condition=models.Q(profile=None)),
        ]


class Conversion(models.Model):
    """A goal event attributed to the exposure it followed: at most one per exposure."""

    exposure = models.OneToOneField(Exposure, on_delete=models.CASCADE, related_name="conversion")
    event_id = models.BigIntegerField()
    converted_at = models.DateTimeField()


class TriggeredSend(models.Model):
    """One entry of a person into a triggered campaign's segment, and what became of it: at most one per
    (campaign, entry), the entry being the segment membership row that recorded it.

    pending -> sending -> sent | retrying -> sending ... | failed; pending -> skipped (no consent, capped, left
    the segment, control or holdout, ...). A send left in `sending` by a worker that died mid-request becomes
    `unknown` and is never sent again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown (sender stopped mid-request)"

    # The idempotency key of the webhook (X-CDP-Delivery) and the decision id of its exposure.
    send_id = models.UUIDField(unique=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sends")
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The segment membership row of the entry (segments owns it: no foreign key, so no write crosses apps).
    membership_id = models.BigIntegerField()
    segment_id = models.BigIntegerField()
    entered_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # Why it was skipped or failed: no_consent, frequency_cap, left_segment, control, global_holdout, ...
    reason = models.CharField(max_length=40, blank=True, default="")
    variant = models.CharField(max_length=50, blank=True, default="")
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "membership_id"], name="one_send_per_entry")]
        indexes = [
            models.Index(fields=["due_at"], name="send_due",
                         condition=models.Q(status__in=["pending", "retrying"])),
            models.Index(fields=["claimed_at"], name="send_in_flight", condition=models.Q(status="sending")),
            models.Index(fields=["campaign", "-created_at"], name="send_by_campaign"),
            models.Index(fields=["profile"], name="send_by_profile"),
        ]
