"""Admin: purposes are edited by privacy officers; the ledger and the current state are read-only."""
from django.contrib import admin

from consent.models import AuditEntry, ConsentEntry, ConsentState, Purpose, RetentionRule
from consent.services.audit import audit_record
from profiles.admin import ReadOnlyAdmin


class AuditedAdmin(admin.ModelAdmin):
    """Every admin change is audited with the names of the fields changed, never their values."""

    def log_addition(self, request, obj, message):
        audit_record(actor=request.user, action=f"admin.add.{obj._meta.model_name}", target_type=obj._meta.model_name,
                     target_id=obj.pk)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        fields = sorted({f for part in message if "changed" in part for f in part["changed"].get("fields", [])})
        audit_record(actor=request.user, action=f"admin.change.{obj._meta.model_name}",
                     target_type=obj._meta.model_name, target_id=obj.pk, details={"fields": fields})
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, action=f"admin.delete.{obj._meta.model_name}",
                         target_type=obj._meta.model_name, target_id=obj.pk)
        return super().log_deletions(request, queryset)


@admin.register(Purpose)
class PurposeAdmin(AuditedAdmin):
    list_display = ["key", "name", "legal_basis", "gdpr_default", "ccpa_default", "tcf_purposes",
                    "segment_categories"]
    search_fields = ["key", "name"]

    def has_delete_permission(self, request, obj=None):
        # Ledger entries point at purposes forever; a purpose no longer used is left in place.
        return False


@admin.register(RetentionRule)
class RetentionRuleAdmin(AuditedAdmin):
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
