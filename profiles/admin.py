"""Admin for sources, profiles, identity rules and the read-only audit tables (import/export: cdp/admin.py)."""
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from profiles import selectors
from profiles.masking import masks_for
from profiles.models import ApiToken, Event, Identifier, IdentityRule, MergeRecord, PendingEvent, Profile, Source

RECENT_EVENTS = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit and event rows are written by the pipeline only; the admin shows them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PersonalDataAdmin(admin.ModelAdmin):
    """Leaves out the fields (and inlines) that hold personal data for a user without
    profiles.view_personal_data, as the API and the screens mask them."""

    personal_fields: tuple[str, ...] = ()
    personal_inlines: tuple = ()

    def _hides(self, request) -> bool:
        return masks_for(request.user)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return [f for f in fields if f not in self.personal_fields] if self._hides(request) else fields

    def get_inlines(self, request, obj):
        inlines = super().get_inlines(request, obj)
        return [i for i in inlines if i not in self.personal_inlines] if self._hides(request) else inlines


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["write_key", "created_at"]


class IdentifierInline(admin.TabularInline):
    model = Identifier
    extra = 0
    fields = ["type", "value", "first_seen", "source_event_id"]
    readonly_fields = ["first_seen", "source_event_id"]


@admin.register(Profile)
class ProfileAdmin(PersonalDataAdmin):
    personal_fields = ("traits", "recent_events", "merge_records")
    personal_inlines = (IdentifierInline,)
    list_display = ["id", "last_seen", "event_count", "merged_into"]
    list_filter = [("merged_into", admin.EmptyFieldListFilter)]
    search_fields = ["=id", "identifiers__value"]
    inlines = [IdentifierInline]
    # The regime follows the traits (consent derives it when they change), so it is shown, never edited.
    readonly_fields = ["regime", "created_at", "updated_at", "merged_into", "first_seen", "last_seen", "event_count",
                       "event_counts", "trait_times", "computed", "recent_events", "merge_records"]
    fields = ["traits", "regime", "computed", "merged_into", "created_at", "updated_at", "first_seen", "last_seen",
              "event_count", "event_counts", "trait_times", "recent_events", "merge_records"]

    @admin.display(description=f"Last {RECENT_EVENTS} events")
    def recent_events(self, profile):
        events = selectors.profile_events(profile=profile).only("id", "timestamp", "type", "event")[:RECENT_EVENTS]
        rows = format_html_join("", "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (reverse("admin:profiles_event_change", args=[e.pk]), e.pk, e.timestamp.isoformat(), e.type,
             e.event or "") for e in events))
        if not rows:
            return "No events."
        return format_html("<table><thead><tr><th>Id</th><th>Time</th><th>Type</th><th>Event</th></tr></thead>"
                           "<tbody>{}</tbody></table>", rows)

    @admin.display(description="Merge records")
    def merge_records(self, profile):
        records = selectors.profile_merges(profile=profile)
        row = "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"
        rows = format_html_join("", row, (
            (reverse("admin:profiles_mergerecord_change", args=[r.pk]), r.created_at.isoformat(), r.outcome,
             r.into_profile_id, r.other_profile_id, r.reason) for r in records))
        if not rows:
            return "None."
        return format_html("<table><thead><tr><th>When</th><th>Outcome</th><th>Into</th><th>Other</th>"
                           "<th>Reason</th></tr></thead><tbody>{}</tbody></table>", rows)


@admin.register(IdentityRule)
class IdentityRuleAdmin(admin.ModelAdmin):
    list_display = ["identifier_type", "priority", "max_per_profile"]


@admin.register(MergeRecord)
class MergeRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "outcome", "into_profile", "other_profile", "reason"]
    list_filter = ["outcome"]
    search_fields = ["=into_profile__id", "=other_profile__id", "message_id"]
    list_select_related = ["into_profile", "other_profile"]


@admin.register(Event)
class EventAdmin(PersonalDataAdmin, ReadOnlyAdmin):
    personal_fields = ("payload", "user_id", "anonymous_id")
    list_display = ["id", "timestamp", "type", "event", "source", "profile", "processed_at", "error"]
    list_filter = ["type"]
    search_fields = ["=message_id", "=user_id", "=anonymous_id"]
    list_select_related = ["source", "profile"]
    # An events table grows large: counting it for every page would be the slowest query of the screen.
    show_full_result_count = False


@admin.register(PendingEvent)
class PendingEventAdmin(PersonalDataAdmin, ReadOnlyAdmin):
    personal_fields = ("payload", "user_id", "anonymous_id")
    """The pipeline's queue: accepted messages not processed yet (normally empty within seconds)."""

    list_display = ["id", "received_at", "timestamp", "type", "event", "source"]
    list_filter = ["type"]
    search_fields = ["=message_id", "=user_id", "=anonymous_id"]
    list_select_related = ["source"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["name", "prefix", "user__username"]
    # Tokens are created by `manage.py create_api_token`, which shows the key once; here they are revoked.
    readonly_fields = ["user", "name", "prefix", "key_hash", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False
