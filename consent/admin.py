"""Admin: purposes are edited by privacy officers; the ledger and the current state are read-only."""
from django.contrib import admin

from consent.models import AuditEntry, ConsentEntry, ConsentState, Purpose, RetentionRule
from profiles.admin import ReadOnlyAdmin


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "legal_basis", "gdpr_default", "ccpa_default", "tcf_purposes",
                    "segment_categories"]
    search_fields = ["key", "name"]

    def has_delete_permission(self, request, obj=None):
        # Ledger entries point at purposes forever; a purpose no longer used is left in place.
        return False


@admin.register(RetentionRule)
class RetentionRuleAdmin(admin.ModelAdmin):
    list_display = ["event_type", "days"]


@admin.register(ConsentEntry)
class ConsentEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "recorded_at", "profile", "purpose", "granted", "source", "regime"]
    list_filter = ["source", "granted", "purpose", "regime"]
    search_fields = ["=profile__id", "message_id"]
    list_select_related = ["profile", "purpose"]
    show_full_result_count = False


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ["profile", "purpose", "granted", "source", "recorded_at"]
    list_filter = ["purpose", "granted", "source"]
    search_fields = ["=profile__id"]
    list_select_related = ["profile", "purpose"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["=target_id", "actor"]
    show_full_result_count = False
