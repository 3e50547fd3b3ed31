"""Admin: segments (a definition is checked by the same service as the API), their static lists imported from a
file, memberships read-only; webhook destinations (the secret is write-only here too), deliveries read-only with
their attempts and a Resend action."""
import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html
from import_export import fields, resources
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.widgets import ForeignKeyWidget

from profiles.admin import PersonalDataAdmin, ReadOnlyAdmin
from profiles.common.queueing import enqueue_after_commit
from profiles.masking import known_values, mask_identifier, mask_traits
from profiles.selectors import identifier_normalise
from segments import rules
from segments.models import (Cluster, ClusteringRun, Delivery, DeliveryAttempt, Destination, Item, ModelVersion,
                             PredictiveModel, RecommenderRun, Segment, SegmentMembership, StaticMember)
from segments.services import deliveries, prediction
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


class DestinationForm(forms.ModelForm):
    # Never rendered back into the page: whoever can open the form cannot read the key off it.
    secret = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False, strip=False,
                             min_length=16, max_length=200,
                             help_text="The HMAC-SHA256 key of X-CDP-Signature. Leave empty to keep the current one.")

    class Meta:
        model = Destination
        fields = ["name", "url", "secret", "active"]

    def clean_secret(self):
        secret = self.cleaned_data.get("secret", "")
        if not secret:
            if not self.instance.pk:
                raise forms.ValidationError("A new destination needs a secret.")
            return self.instance.secret
        return secret


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = ["name", "url", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]


class ReadOnlyInline(admin.TabularInline):
    """Rows a task wrote (a delivery's attempts, a training's results): shown, never edited here."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["at", "status_code", "error", "duration_ms"]


def _masked(payload: dict) -> dict:
    profile = dict(payload.get("profile") or {})
    known = known_values([("email", profile.get("email"))])
    for kind in ("user_id", "email"):
        if profile.get(kind):
            profile[kind] = mask_identifier(kind, profile[kind], known)
    profile["traits"] = mask_traits(profile.get("traits") or {}, known)
    return {**payload, "profile": profile}


@admin.register(Delivery)
class DeliveryAdmin(PersonalDataAdmin):
    """Written by the deliveries service only: read-only here, resent with the action. The body holds the person's
    identifiers and traits: masked for a role without the personal data permission."""

    personal_fields = {"payload": ("masked_payload",)}
    list_display = ["delivery_id", "type", "segment", "destination", "profile_ref", "status", "attempts",
                    "created_at", "delivered_at"]
    list_filter = ["status", "destination", "type"]
    list_select_related = ["segment", "destination"]
    search_fields = ["=delivery_id", "=profile__id"]
    show_full_result_count = False
    fields = ["delivery_id", "type", "segment", "destination", "profile_ref", "occurred_at", "status", "attempts",
              "last_error", "next_attempt_at", "delivered_at", "created_at", "payload"]
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["resend"]

    @admin.display(description="Profile")
    def profile_ref(self, delivery):
        # The id only: the profile's own page shows the rest, to whoever may see it.
        return delivery.profile_id

    @admin.display(description="Body")
    def masked_payload(self, delivery):
        return format_html("<pre>{}</pre>", json.dumps(_masked(delivery.payload), indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_resend_permission(self, request):
        return request.user.has_perm("segments.change_delivery")

    @admin.action(description="Resend (same delivery id, same body)", permissions=["resend"])
    def resend(self, request, queryset):
        resent, refused = 0, 0
        for delivery_id in queryset.values_list("id", flat=True):
            try:
                deliveries.delivery_resend(delivery_id=delivery_id)
                resent += 1
            except (Delivery.DoesNotExist, deliveries.DeliveryStateError):
                refused += 1
        self.message_user(request, f"Queued {resent} deliveries again.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{refused} were still waiting to be sent, or gone.", messages.WARNING)


class ItemResource(resources.ModelResource):
    """Catalog rows of `item_id,name,category,brand,price,url,image_url,active`, matched by item_id; an imported
    item keeps the catalog's values from then on (events no longer change it)."""

    class Meta:
        model = Item
        fields = ["item_id", "name", "category", "brand", "price", "url", "image_url", "active"]
        import_id_fields = ["item_id"]
        skip_unchanged = True

    def import_instance(self, instance, row, **kwargs):
        super().import_instance(instance, row, **kwargs)
        instance.origin = Item.Origin.API
        instance.full_clean(exclude=["origin"])


@admin.register(Item)
class ItemAdmin(ImportExportMixin, admin.ModelAdmin):
    resource_classes = [ItemResource]
    formats = [CSV, XLSX]
    list_display = ["item_id", "name", "category", "brand", "price", "active", "origin", "updated_at"]
    list_filter = ["active", "origin"]
    search_fields = ["item_id", "name", "category", "brand"]
    readonly_fields = ["origin", "updated_at"]

    def save_model(self, request, obj, form, change):
        obj.origin = Item.Origin.API
        super().save_model(request, obj, form, change)


class ClusterInline(ReadOnlyInline):
    model = Cluster
    fields = ["number", "size", "description", "centroid", "segment"]


@admin.register(ClusteringRun)
class ClusteringRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "k", "profiles", "created_at", "duration_s"]
    list_filter = ["status"]
    inlines = [ClusterInline]


class ModelVersionInline(ReadOnlyInline):
    model = ModelVersion
    fields = ["version", "trained_at", "algorithm", "auc", "baseline_auc", "brier", "base_rate", "incumbent_auc",
              "promoted", "scored"]


@admin.register(PredictiveModel)
class PredictiveModelAdmin(admin.ModelAdmin):
    """Created through the API or the models screen, which check the key and queue the training; here the
    schedule and the algorithm can be changed."""

    list_display = ["key", "target_event", "horizon_days", "negate", "status", "last_trained_at"]
    fields = ["key", "name", "target_event", "horizon_days", "negate", "algorithm", "retrain_every_days", "status",
              "last_error", "last_trained_at"]
    readonly_fields = ["key", "target_event", "horizon_days", "negate", "status", "last_error", "last_trained_at"]
    inlines = [ModelVersionInline]

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        prediction.model_delete(model=obj)

    def delete_queryset(self, request, queryset):
        # A model's scores go with it, as through the API.
        for model in queryset:
            prediction.model_delete(model=model)


@admin.register(RecommenderRun)
class RecommenderRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "started_at", "people", "items", "interactions", "duration_s"]
    exclude = ["popular"]
