"""Purposes, the append-only consent ledger, and the current consent state derived from it."""
from django.conf import settings
from django.db import models

from profiles.models import Profile


class Regime(models.TextChoices):
    GDPR = "gdpr", "GDPR (opt-in)"
    CCPA = "ccpa", "CCPA/CPRA (opt-out)"


class LegalBasis(models.TextChoices):
    CONSENT = "consent", "Consent"
    LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest"
    CONTRACT = "contract", "Contract"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation"


class Purpose(models.Model):
    """What personal data is used for. Data, edited by privacy officers; the code knows purposes only by key."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    legal_basis = models.CharField(max_length=32, choices=LegalBasis.choices, default=LegalBasis.CONSENT)
    # The state of a purpose before the person made any choice: under GDPR nothing is granted until granted
    # (Art. 6(1)(a), 7), under CCPA/CPRA everything is until the person opts out (Cal. Civ. Code 1798.120).
    gdpr_default = models.BooleanField(default=False, help_text="Granted before any choice, under GDPR.")
    ccpa_default = models.BooleanField(default=True, help_text="Granted before any choice, under CCPA/CPRA.")
    tcf_purposes = models.JSONField(
        default=list, blank=True,
        help_text="IAB TCF v2 purpose ids that decide this purpose: granted when the TC string consents to all.")
    segment_categories = models.JSONField(
        default=list, blank=True,
        help_text="Names in Segment's context.consent.categoryPreferences that decide this purpose.")

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class ConsentSource(models.TextChoices):
    API = "api", "REST API"
    COLLECTION = "collection", "Collection API message"
    WEB_FORM = "web_form", "Web form"
    IMPORT = "import", "Import"
    TCF = "tcf", "IAB TCF string"
    GPC = "gpc", "Global Privacy Control"
    ADMIN = "admin", "Admin"
    MERGE = "merge", "Profile merge"
    PRIVACY_OFFICER = "privacy_officer", "Recorded by a privacy officer"
    PRIVACY_REQUEST = "privacy_request", "Privacy request carried out"


class ConsentEntry(models.Model):
    """One consent choice, as it was made. Never changed: the database refuses updates and deletes, except
    erasure clearing the personal data (the profile link and the proof) of a deleted subject."""

    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="consent_entries")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    granted = models.BooleanField()
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    regime = models.CharField(max_length=8, choices=Regime.choices)
    # When the person made the choice (the message time for collected signals); the latest choice wins.
    recorded_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    policy_version = models.CharField(max_length=64, blank=True, default="")
    tc_string = models.TextField(blank=True, default="")
    ip_hash = models.CharField(max_length=64, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    event_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["profile", "purpose", "-recorded_at"], name="consententry_profile")]
        verbose_name_plural = "consent entries"

    def __str__(self):
        return f"{self.purpose_id} {'granted' if self.granted else 'denied'} ({self.source})"


class ConsentState(models.Model):
    """The current choice per profile and purpose: the latest ledger entry, kept up to date in the same
    transaction. No row means no choice yet, so the purpose's default under the profile's regime applies."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="consent_states")
    # Indexed below, together with the choice.
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="+", db_index=False)
    granted = models.BooleanField()
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    recorded_at = models.DateTimeField()
    entry = models.ForeignKey(ConsentEntry, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["profile", "purpose"], name="consentstate_unique")]
        # The consent filter over all profiles hashes the states of one purpose (or only its grants, or only its
        # denials), which this index holds without the table. It replaces the foreign key's index on purpose,
        # and a state update already changes an indexed column (entry), so no update loses HOT by it.
        indexes = [models.Index(fields=["purpose", "granted", "profile"], name="consentstate_purpose_choice")]


class RequestKind(models.TextChoices):
    ACCESS = "access", "Access"
    PORTABILITY = "portability", "Portability"
    DELETION = "deletion", "Deletion"
    RECTIFICATION = "rectification", "Rectification"
    RESTRICTION = "restriction", "Restriction of processing"
    OPT_OUT = "opt_out_sale", "Opt-out of sale/sharing"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    VERIFYING = "verifying_identity", "Verifying identity"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"


class PrivacyRequest(models.Model):
    """A data subject request and where it stands. Every change of status is a PrivacyRequestTransition.

    `identifiers` names the subject until the request is done; a completed deletion keeps only their types,
    so the request itself leaves nothing of the person behind.
    """

    kind = models.CharField(max_length=16, choices=RequestKind.choices)
    regime = models.CharField(max_length=8, choices=Regime.choices)
    status = models.CharField(max_length=24, choices=RequestStatus.choices, default=RequestStatus.RECEIVED)
    identifiers = models.JSONField(default=list)
    received_at = models.DateTimeField()
    acknowledge_by = models.DateField(null=True, blank=True)
    due_on = models.DateField()
    extended_reason = models.TextField(blank=True, default="")
    verified_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    rejected_reason = models.TextField(blank=True, default="")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    notes = models.TextField(blank=True, default="")
    # A deletion adds the subject's identifiers to the suppression list, so later events are dropped; when this
    # is set, later events may create a new profile instead.
    allow_recreation = models.BooleanField(default=False)
    progress = models.JSONField(default=dict, blank=True)
    receipt = models.JSONField(null=True, blank=True)
    # Rectification: the traits to set, {"name": "New Name", ...}.
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["due_on", "id"]
        indexes = [models.Index(fields=["status", "due_on"], name="privacyrequest_queue")]

    def __str__(self):
        return f"{self.get_kind_display()} request {self.pk}"


class PrivacyRequestTransition(models.Model):
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=24, blank=True, default="")
    to_status = models.CharField(max_length=24)
    action = models.CharField(max_length=32)
    note = models.TextField(blank=True, default="")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]


class SuppressedIdentifier(models.Model):
    """An identifier of an erased subject, as a keyed hash: events that carry it are dropped before they
    create anything. The hash cannot be turned back into the identifier."""

    digest = models.CharField(max_length=64, unique=True)
    request = models.ForeignKey(PrivacyRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)


class AuditEntry(models.Model):
    """One action on personal data, consent or a privacy request. Append-only (the database refuses changes),
    chained: each entry's hash covers its content and the previous entry's hash, so `manage.py verify_audit`
    finds the first entry that was altered. Entries name profiles and requests by id and copy no personal
    data, so an erasure never has to touch the log and the chain stays whole."""

    at = models.DateTimeField()
    actor = models.CharField(max_length=150, blank=True, default="", help_text="Username, or the system part.")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32)
    target_id = models.BigIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="auditentry_target")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target_type} {self.target_id}"


class PrivacyExport(models.Model):
    """The JSON file an access or portability request produced. Downloadable once, by a privacy officer,
    until it expires; the file is deleted when downloaded or expired, and when its subject is erased."""

    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="exports")
    profile_ids = models.JSONField(default=list)
    path = models.CharField(max_length=500, blank=True, default="")
    token = models.CharField(max_length=64, unique=True)
    size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    downloaded_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)


class RetentionRule(models.Model):
    """How long events of one type are kept; the rule for "*" applies to every type without its own."""

    event_type = models.CharField(max_length=16, unique=True,
                                  help_text='identify, track, page, screen, group, alias, or "*" for the default.')
    days = models.PositiveIntegerField()

    class Meta:
        ordering = ["event_type"]

    def __str__(self):
        return f"{self.event_type}: {self.days} days"
