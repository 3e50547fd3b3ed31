"""Profile import and export in the admin, and its audit. It lives in cdp because an imported row runs the whole
pipeline, and an edit is audited by consent and moves the regime consent derives from the traits, all above
profiles."""
from django.contrib import admin
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, JSON, XLSX

from cdp.resources import ProfileResource
from consent.admin import AuditedAdmin
from consent.selectors import SALE_SHARING, consent_allowed_q
from consent.services.regimes import consent_regimes_store
from profiles.admin import ProfileAdmin
from profiles.models import Profile

admin.site.unregister(Profile)


@admin.register(Profile)
class ProfileImportExportAdmin(AuditedAdmin, ImportExportMixin, ProfileAdmin):
    resource_classes = [ProfileResource]
    formats = [CSV, XLSX, JSON]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # Edited traits may name another country; the admin's transaction holds the row saved just above.
        consent_regimes_store(traits={obj.pk: obj.traits})

    def get_export_queryset(self, request):
        """An export is data leaving the platform: only profiles whose sale/sharing is allowed go."""
        return super().get_export_queryset(request).filter(consent_allowed_q(purpose=SALE_SHARING))
