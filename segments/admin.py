"""Admin: segments (a definition is checked by the same service as the API), their static lists imported from a
file, memberships read-only."""
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from import_export import fields, resources
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.widgets import ForeignKeyWidget

from profiles.admin import ReadOnlyAdmin
from profiles.common.queueing import enqueue_after_commit
from profiles.selectors import identifier_normalise
from segments import rules
from segments.models import Segment, SegmentMembership, StaticMember
from segments.services.definitions import definition_check


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "mode", "status", "size", "last_computed_at"]
    list_filter = ["mode", "status"]
    search_fields = ["key", "name"]
    readonly_fields = ["status", "size", "last_computed_at", "last_error", "references"]
    filter_horizontal = ["destinations"]
    actions = ["recompute"]

    def save_model(self, request, obj, form, change):
        obj.save()
        enqueue_after_commit("segments.recompute", obj.pk)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        def clean(this):
            data = super(form, this).clean()
            if data.get("mode") != Segment.Mode.STATIC:
                try:
                    checked = definition_check(definition=data.get("definition"), key=data.get("key"))
                except rules.DefinitionError as exc:
                    raise ValidationError({"definition": f"{exc.field}: {exc.message}"}) from exc
                this.instance.references = checked.references
            else:
                data["definition"], this.instance.references = {}, []
            return data

        form.clean = clean
        return form

    @admin.action(description="Recompute now")
    def recompute(self, request, queryset):
        for segment_id in queryset.values_list("id", flat=True):
            enqueue_after_commit("segments.recompute", segment_id)
        self.message_user(request, f"Queued {queryset.count()} recompute(s).", messages.SUCCESS)


class StaticMemberResource(resources.ModelResource):
    """Rows of `segment,identifier_type,value` (the segment by key); values are normalised as identity
    resolution stores them, and a row already listed is skipped."""

    segment = fields.Field(attribute="segment", column_name="segment",
                           widget=ForeignKeyWidget(Segment, field="key"))

    class Meta:
        model = StaticMember
        fields = ["segment", "identifier_type", "value"]
        import_id_fields = ["segment", "identifier_type", "value"]
        skip_unchanged = True

    def before_import_row(self, row, **kwargs):
        kind = (row.get("identifier_type") or "").strip()
        row["identifier_type"] = kind
        row["value"] = identifier_normalise(kind, str(row.get("value") or ""))

    def import_instance(self, instance, row, **kwargs):
        super().import_instance(instance, row, **kwargs)
        if instance.segment.mode != Segment.Mode.STATIC:
            raise ValidationError(f"segment {instance.segment.key} is {instance.segment.mode}, not static")
        if not instance.value:
            raise ValidationError("value is empty or not a valid identifier of its type")

    def after_import(self, dataset, result, **kwargs):
        if not kwargs.get("dry_run"):
            keys = {row.get("segment") for row in dataset.dict}
            for segment_id in Segment.objects.filter(key__in=keys).values_list("id", flat=True):
                enqueue_after_commit("segments.recompute", segment_id)


@admin.register(StaticMember)
class StaticMemberAdmin(ImportExportMixin, admin.ModelAdmin):
    resource_classes = [StaticMemberResource]
    formats = [CSV, XLSX]
    list_display = ["segment", "identifier_type", "value", "added_at"]
    list_filter = ["segment", "identifier_type"]
    search_fields = ["=value"]


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(ReadOnlyAdmin):
    list_display = ["segment", "profile", "entered_at", "exited_at"]
    list_filter = ["segment"]
    search_fields = ["=profile__id"]
    list_select_related = ["segment"]
    show_full_result_count = False
