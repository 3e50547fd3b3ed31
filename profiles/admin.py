"""Admin for sources, profiles, identity rules and the read-only audit tables (import/export, the audit of admin
changes and the write key's rotation: cdp/admin.py)."""
import json

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from profiles import selectors
from profiles.masking import (NOTHING_KNOWN, known_values, mask_identifier, mask_json, mask_merge_record,
                              mask_payload, mask_text, mask_traits, masks_for, personal_identifiers)
from profiles.models import ApiToken, Event, Identifier, IdentityRule, MergeRecord, PendingEvent, Profile, Source

RECENT_EVENTS = 20
# Enough of a write key to tell sources apart, not enough to send with.
WRITE_KEY_SHOWN = 4


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit and event rows are written by the pipeline only; the admin shows them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _json(value):
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True,
                                                   default=str))


class PersonalDataAdmin(admin.ModelAdmin):
    """For a user without profiles.view_personal_data, shows each field that holds personal data through its
    masked stand-in (profiles.masking, as the API and the screens), read-only, in lists and detail pages, and
    leaves out the inlines that hold it.

    `personal_fields` maps a field (or a list column) to the read-only fields shown instead; an empty tuple
    leaves it out."""

    personal_fields: dict[str, tuple[str, ...]] = {}
    personal_inlines: tuple = ()

    def _hides(self, request) -> bool:
        return masks_for(request.user)

    def _swap(self, request, names) -> list:
        if not self._hides(request):
            return list(names)
        swapped = [stand_in for name in names for stand_in in self.personal_fields.get(name, (name,))]
        return list(dict.fromkeys(swapped))  # a stand-in also listed among the read-only fields comes once

    def get_fields(self, request, obj=None):
        return self._swap(request, super().get_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if self._hides(request):
            fields += [f for stand_ins in self.personal_fields.values() for f in stand_ins if f not in fields]
        return fields

    def get_list_display(self, request):
        return self._swap(request, super().get_list_display(request))

    def get_inlines(self, request, obj):
        inlines = super().get_inlines(request, obj)
        return [i for i in inlines if i not in self.personal_inlines] if self._hides(request) else inlines


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    """A write key lets anyone send events and consent signals as the source: it is shown in full once, to whoever
    creates the source (or rotates its key, cdp/admin.py), and by its first characters everywhere else."""

    list_display = ["name", "write_key_start", "is_active", "created_at"]
    search_fields = ["name"]
    fields = ["name", "is_active", "write_key_start", "created_at"]
    readonly_fields = ["write_key_start", "created_at"]

    @admin.display(description="Write key")
    def write_key_start(self, source):
        return f"{source.write_key[:WRITE_KEY_SHOWN]}{'•' * 8}" if source.write_key else "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(request, format_html(
                "The write key of {}: <code>{}</code> — copy it now: it is not shown again.", obj.name,
                obj.write_key))


class IdentifierInline(admin.TabularInline):
    model = Identifier
    extra = 0
    fields = ["type", "value", "first_seen", "source_event_id"]
    readonly_fields = ["first_seen", "source_event_id"]


@admin.register(Profile)
class ProfileAdmin(PersonalDataAdmin):
    personal_fields = {"traits": ("masked_identifiers", "masked_traits"), "merge_records": ("masked_merge_records",)}
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

    def get_search_results(self, request, queryset, search_term):
        """Without the personal data permission, the profile search of the screens and the API: whole identifiers
        (emails and phones normalised) and whole trait values only, so a masked value cannot be recovered letter by
        letter."""
        if not self._hides(request) or not search_term.strip():
            return super().get_search_results(request, queryset, search_term)
        found = selectors.profile_search(query=search_term, partial=False).values("id")
        return queryset.filter(id__in=found), False

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

    def _merge_rows(self, profile, *, masked: bool):
        known = known_values(profile.identifiers.all()) if masked else NOTHING_KNOWN
        for r in selectors.profile_merges(profile=profile):
            reason = mask_merge_record(reason=r.reason, linking_identifiers=r.linking_identifiers,
                                       known=known)[0] if masked else r.reason
            yield (reverse("admin:profiles_mergerecord_change", args=[r.pk]), r.created_at.isoformat(), r.outcome,
                   r.into_profile_id, r.other_profile_id, reason)

    def _merge_table(self, profile, *, masked: bool):
        row = "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"
        rows = format_html_join("", row, self._merge_rows(profile, masked=masked))
        if not rows:
            return "None."
        return format_html("<table><thead><tr><th>When</th><th>Outcome</th><th>Into</th><th>Other</th>"
                           "<th>Reason</th></tr></thead><tbody>{}</tbody></table>", rows)

    @admin.display(description="Merge records")
    def merge_records(self, profile):
        return self._merge_table(profile, masked=False)

    @admin.display(description="Merge records")
    def masked_merge_records(self, profile):
        return self._merge_table(profile, masked=True)

    @admin.display(description="Identifiers")
    def masked_identifiers(self, profile):
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (i.type, mask_identifier(i.type, i.value), i.first_seen.isoformat())
            for i in profile.identifiers.order_by("type", "first_seen", "id")))
        return format_html("<table><thead><tr><th>Type</th><th>Value</th><th>First seen</th></tr></thead>"
                           "<tbody>{}</tbody></table>", rows) if rows else "None."

    @admin.display(description="Traits")
    def masked_traits(self, profile):
        return _json(mask_traits(profile.traits, known_values(profile.identifiers.all())))


@admin.register(IdentityRule)
class IdentityRuleAdmin(PersonalDataAdmin):
    # A blocked value may be someone's address (a shared support mailbox); it is masked like any other.
    personal_fields = {"blocked_values": ("masked_blocked_values",)}
    list_display = ["identifier_type", "priority", "max_per_profile"]

    @admin.display(description="Blocked values")
    def masked_blocked_values(self, rule):
        return _json(mask_json(rule.blocked_values))


@admin.register(MergeRecord)
class MergeRecordAdmin(PersonalDataAdmin, ReadOnlyAdmin):
    personal_fields = {"reason": ("masked_reason",), "linking_identifiers": ("masked_linking_identifiers",)}
    list_display = ["id", "created_at", "outcome", "into_profile", "other_profile", "reason"]
    list_filter = ["outcome"]
    search_fields = ["=into_profile__id", "=other_profile__id", "message_id"]
    list_select_related = ["into_profile", "other_profile"]

    @admin.display(description="Reason")
    def masked_reason(self, record):
        return mask_merge_record(reason=record.reason, linking_identifiers=record.linking_identifiers)[0]

    @admin.display(description="Linking identifiers")
    def masked_linking_identifiers(self, record):
        return ", ".join(mask_merge_record(reason="", linking_identifiers=record.linking_identifiers)[1])


class MessageAdmin(PersonalDataAdmin, ReadOnlyAdmin):
    """A stored message is shown masked by key and by value, with its profile's own emails and phones."""

    personal_fields = {"payload": ("masked_payload",), "user_id": ("masked_user_id",),
                       "anonymous_id": ("masked_anonymous_id",)}
    list_filter = ["type"]
    search_fields = ["=message_id", "=user_id", "=anonymous_id"]

    @staticmethod
    def _known(message):
        profile_id = getattr(message, "profile_id", None)
        return personal_identifiers([profile_id]).get(profile_id, NOTHING_KNOWN) if profile_id else NOTHING_KNOWN

    @admin.display(description="Payload")
    def masked_payload(self, message):
        return _json(mask_payload(message.payload, self._known(message)))

    @admin.display(description="User id")
    def masked_user_id(self, message):
        return mask_identifier("user_id", message.user_id)

    @admin.display(description="Anonymous id")
    def masked_anonymous_id(self, message):
        return mask_identifier("anonymous_id", message.anonymous_id)


@admin.register(Event)
class EventAdmin(MessageAdmin):
    # The error of an event set aside may quote the value PostgreSQL refused.
    personal_fields = {**MessageAdmin.personal_fields, "error": ("masked_error",)}
    list_display = ["id", "timestamp", "type", "event", "source", "profile", "processed_at", "error"]
    list_select_related = ["source", "profile"]
    # An events table grows large: counting it for every page would be the slowest query of the screen.
    show_full_result_count = False

    @admin.display(description="Error")
    def masked_error(self, event):
        return mask_text(event.error)


@admin.register(PendingEvent)
class PendingEventAdmin(MessageAdmin):
    """The pipeline's queue: accepted messages not processed yet (normally empty within seconds)."""

    list_display = ["id", "received_at", "timestamp", "type", "event", "source"]
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
