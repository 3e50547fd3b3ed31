"""Sources, events, identifiers, unified profiles and the records identity resolution keeps."""
import hashlib
import secrets

from django.conf import settings
from django.db import models


class Source(models.Model):
    """A system that sends events; its write key authenticates the collection API."""

    name = models.CharField(max_length=200, unique=True)
    write_key = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set only on the product's own rectification source: an identify from it that changes the email or phone
    # trait also replaces the identifier of the old value, so the old value no longer finds the profile.
    replaces_identifiers = models.BooleanField(default=False, editable=False)

    def save(self, *args, **kwargs):
        if not self.write_key:
            self.write_key = secrets.token_urlsafe(24)
        super().save(*args, **kwargs)

    def __str__(self):
        return self.name


class Profile(models.Model):
    """One person. A profile merged into another keeps its row as a tombstone pointing at the survivor."""

    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    # Indexed once, by the named index in Meta (the foreign key's own index would be a second, identical one).
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                    db_index=False)
    traits = models.JSONField(default=dict, blank=True)
    # When each trait was last set (ISO timestamp of the message), so the latest message wins
    # whatever order batches and merges arrive in.
    trait_times = models.JSONField(default=dict, blank=True)
    computed = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    # Not indexed: it changes with every event, and an indexed column that changes makes every profile update
    # a non-HOT one (a new entry in every index). Reads of it are aggregates over all profiles anyway.
    last_seen = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    event_counts = models.JSONField(default=dict, blank=True)
    # The privacy regime ("gdpr", "ccpa") the country in the traits names, stored so that consent filters over
    # millions of profiles read a column instead of parsing traits. Consent owns the mapping and keeps it current
    # whenever the country traits change; "" when the country names none, so the CONSENT_DEFAULT_REGIME setting
    # applies when read and a change of that setting needs no rewrite. Not indexed, like last_seen: filters on
    # it scan every live profile anyway (it holds three values), and its rewrite when a country changes must
    # stay a HOT update.
    regime = models.CharField(max_length=8, blank=True, default="", db_default="", editable=False)

    class Meta:
        indexes = [models.Index(fields=["merged_into"], name="profile_merged_into")]
        permissions = [("view_personal_data", "Can see email, phone, name and address unmasked"),
                       ("import_profiles", "Can import profiles from a file (admin)")]

    def __str__(self):
        return f"Profile {self.pk}"

    @property
    def is_merged(self):
        return self.merged_into_id is not None


class IdentifierType(models.TextChoices):
    USER_ID = "user_id", "User id"
    ANONYMOUS_ID = "anonymous_id", "Anonymous id"
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"


class Identifier(models.Model):
    """One identifier value of one live profile. Unique per (type, value): one identity, one profile."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identifiers")
    type = models.CharField(max_length=64)
    value = models.CharField(max_length=512)
    first_seen = models.DateTimeField()
    source_event_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "value"], name="identifier_unique_type_value")]
        indexes = [
            models.Index(fields=["profile", "type"], name="identifier_profile_type"),
            models.Index(fields=["value"], name="identifier_value"),
        ]

    def __str__(self):
        return f"{self.type}:{self.value}"


class IdentityRule(models.Model):
    """Per identifier type: how much it counts, how many one profile may hold, which values mean nothing."""

    identifier_type = models.CharField(max_length=64, unique=True)
    priority = models.PositiveIntegerField(default=50, help_text="Higher wins when a merge is refused.")
    max_per_profile = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty means unlimited. Two profiles never merge past this."
    )
    blocked_values = models.JSONField(default=list, blank=True, help_text="Values ignored as identifiers (case-insensitive).")

    class Meta:
        ordering = ["-priority"]

    def __str__(self):
        return self.identifier_type


class EventType(models.TextChoices):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class MessageKey(models.Model):
    """A (source, messageId) the collection API has accepted: what makes a replayed message a duplicate.

    Kept for MESSAGE_DEDUPE_DAYS after it was received, and as long as its message is still queued
    (profiles.services.message_keys). A table of its own because the events are partitioned by month, and
    PostgreSQL only enforces a unique key on a partitioned table when the key contains the partition column.
    """

    pk = models.CompositePrimaryKey("source_id", "message_id")
    # No database foreign keys on the three ingestion tables: a per-row referential check (which also
    # share-locks the referenced row) costs more than the insert. Only the pipeline and the erasure code write them.
    # No index of its own either: the primary key leads with it, and every index costs each accepted message.
    source = models.ForeignKey(Source, on_delete=models.CASCADE, db_constraint=False, db_index=False,
                               related_name="+")
    message_id = models.CharField(max_length=200)
    received_at = models.DateTimeField()

    class Meta:
        # What the scheduled prune (profiles.services.message_keys) walks to forget keys past the dedupe window.
        # Accept writes it in received_at order, so every insert lands on the index's rightmost page.
        indexes = [models.Index(fields=["received_at"], name="messagekey_received_at")]


class Message(models.Model):
    """The columns of an accepted message, as the collection API stored it."""

    source = models.ForeignKey(Source, on_delete=models.PROTECT, db_constraint=False, related_name="+")
    message_id = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=EventType.choices)
    event = models.CharField(max_length=200, blank=True, default="")
    user_id = models.CharField(max_length=512, blank=True, default="")
    anonymous_id = models.CharField(max_length=512, blank=True, default="")
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    payload = models.JSONField()

    class Meta:
        abstract = True


class PendingEvent(Message):
    """An accepted message waiting for the pipeline. Processing moves it, with the same id, into Event.

    A small queue table apart from the events, so that processing never rewrites an event row (an update of
    a row in a big indexed table costs a new row version and an entry in every index).
    """

    def __str__(self):
        return f"pending {self.type} {self.event or ''} {self.message_id}"


class Event(Message):
    """A processed message, stored as sent, on the profile it resolved to. Append-only.

    On PostgreSQL the table is partitioned by month of `timestamp` (see profiles.services.partitions), so
    retention drops whole months. The id is the PendingEvent id the message was accepted with.
    """

    id = models.BigIntegerField(primary_key=True)
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False,
                                related_name="events")
    processed_at = models.DateTimeField()
    # Set when the pipeline could not process this event even alone; it was set aside without a profile.
    error = models.TextField(blank=True, db_default="")

    class Meta:
        indexes = [
            models.Index(fields=["profile", "-timestamp", "-id"], name="event_profile_timeline"),
            # The few events set aside without a profile, by the ids an erasure finds them with. Partial, so the
            # pipeline's normal inserts (all with a profile) never touch them.
            models.Index(fields=["user_id"], name="event_set_aside_user", condition=models.Q(profile__isnull=True)),
            models.Index(fields=["anonymous_id"], name="event_set_aside_anonymous",
                         condition=models.Q(profile__isnull=True)),
        ]

    def __str__(self):
        return f"{self.type} {self.event or ''} {self.message_id}"


class TraitChange(models.Model):
    """History of a profile's traits: every value that replaced another."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="trait_changes")
    key = models.CharField(max_length=200)
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    changed_at = models.DateTimeField()
    event_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["profile", "-changed_at"], name="traitchange_profile")]


class MergeRecord(models.Model):
    """The audit of one identity decision: a merge, or a merge refused because it broke a rule."""

    class Outcome(models.TextChoices):
        MERGED = "merged"
        REFUSED = "refused"

    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    into_profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_in")
    # Empty when what was refused is an identifier that would exceed a maximum, not a second profile.
    other_profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.CASCADE,
                                      related_name="merges_out")
    reason = models.TextField()
    # The identifiers that linked the two profiles, as "type:value".
    linking_identifiers = models.JSONField(default=list)
    moved_identifiers = models.PositiveIntegerField(default=0)
    moved_events = models.PositiveIntegerField(default=0)
    event_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["other_profile"], name="mergerecord_other")]


class ApiToken(models.Model):
    """A bearer token for the REST API. Only a hash is stored; the token is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()
