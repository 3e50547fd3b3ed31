"""Purposes, the append-only consent ledger, and the current consent state derived from it."""
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
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="+")
    granted = models.BooleanField()
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    recorded_at = models.DateTimeField()
    entry = models.ForeignKey(ConsentEntry, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["profile", "purpose"], name="consentstate_unique")]
