"""Profile import and export in the admin, the sources' write key rotation, and their audit. It lives in cdp because
an imported row runs the whole pipeline, the audit log is consent's, and an edit moves the regime consent derives
from the traits, all above profiles."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, JSON, XLSX

from cdp.resources import ProfileResource
from consent.admin import AuditedAdmin
from consent.selectors import SALE_SHARING, consent_allowed_q
from consent.services.audit import audit_record
from consent.services.regimes import consent_regimes_store
from profiles.admin import ProfileAdmin, SourceAdmin
from profiles.masking import masks_for
from profiles.messages import same_trait_value
from profiles.models import Profile, Source
from profiles.services.sources import sources_rotate_write_keys
from segments.services.membership import BatchChanges, segments_after_batch

IMPORT_PERMISSION = "profiles.import_profiles"

admin.site.unregister(Profile)
admin.site.unregister(Source)


@admin.register(Profile)
class ProfileImportExportAdmin(AuditedAdmin, ImportExportMixin, ProfileAdmin):
    resource_classes = [ProfileResource]
    formats = [CSV, XLSX, JSON]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # Edited traits may name another country; the admin's transaction holds the row saved just above.
        consent_regimes_store(traits={obj.pk: obj.traits})
        before, after = form.initial.get("traits") or {}, obj.traits or {}
        edited = frozenset(key for key in before.keys() | after.keys()
                           if key not in before or key not in after or not same_trait_value(before[key], after[key]))
        # Realtime segments follow an edit as they follow the pipeline's writes, not at their next sweep.
        if edited:
            segments_after_batch(changes=BatchChanges(traits={obj.pk: edited}))

    def has_import_permission(self, request):
        """An import writes profiles for everyone in the file: the Admin role only."""
        return request.user.has_perm(IMPORT_PERMISSION)

    def get_export_resource_kwargs(self, request, **kwargs):
        return {**super().get_export_resource_kwargs(request, **kwargs), "mask": masks_for(request.user)}

    def get_export_queryset(self, request):
        """An export is data leaving the platform: only profiles whose sale/sharing is allowed go."""
        return super().get_export_queryset(request).filter(consent_allowed_q(purpose=SALE_SHARING))

    def get_data_for_export(self, request, queryset, **kwargs):
        dataset = super().get_data_for_export(request, queryset, **kwargs)
        audit_record(actor=request.user, action="admin.export.profile", target_type="profile",
                     details={"rows": len(dataset), "masked": masks_for(request.user)})
        return dataset

    def process_result(self, result, request):
        totals = {kind: count for kind, count in result.totals.items() if count}
        audit_record(actor=request.user, action="admin.import.profile", target_type="profile",
                     details={"rows": result.total_rows, **totals})
        return super().process_result(result, request)


@admin.register(Source)
class SourceRotatingAdmin(AuditedAdmin, SourceAdmin):
    """Rotating a write key is audited like any admin change; the new key is shown once, in the admin message."""

    actions = ["rotate_write_keys"]
    change_form_template = "admin/source_change_form.html"

    def get_urls(self):
        rotate = path("<int:source_id>/rotate-write-key/", self.admin_site.admin_view(self.rotate_write_key_view),
                      name="profiles_source_rotate_write_key")
        return [rotate, *super().get_urls()]

    def _rotate(self, request, source_ids: list[int]) -> None:
        with transaction.atomic():
            sources = sources_rotate_write_keys(source_ids=source_ids)
            for source in sources:
                audit_record(actor=request.user, action="admin.rotate_write_key.source", target_type="source",
                             target_id=source.pk)
        for source in sources:
            messages.warning(request, format_html(
                "The new write key of {}: <code>{}</code> — copy it now: it is not shown again. The old key no "
                "longer works.", source.name, source.write_key))

    @admin.action(description="Rotate the write key of the selected sources", permissions=["change"])
    def rotate_write_keys(self, request, queryset):
        self._rotate(request, list(queryset.values_list("pk", flat=True)))

    def rotate_write_key_view(self, request, source_id: int):
        """GET asks to confirm (the source's senders stop working until they have the new key); POST rotates."""
        source = get_object_or_404(Source, pk=source_id)
        if not self.has_change_permission(request, source):
            raise PermissionDenied
        if request.method == "POST":
            self._rotate(request, [source.pk])
            return redirect(reverse("admin:profiles_source_change", args=[source.pk]))
        context = {**self.admin_site.each_context(request), "title": "Rotate the write key", "source": source,
                   "opts": self.opts, "key_start": self.write_key_start(source)}
        return TemplateResponse(request, "admin/source_rotate_write_key.html", context)
