"""Profile import and export in the admin, and its audit. It lives in cdp because an imported row runs the whole
pipeline and an edit is audited by consent, both above profiles."""
from django.contrib import admin
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, JSON, XLSX

from cdp.resources import ProfileResource
from consent.admin import AuditedAdmin
from consent.selectors import sharing_allowed
from profiles.admin import ProfileAdmin
from profiles.models import Profile

admin.site.unregister(Profile)


@admin.register(Profile)
class ProfileImportExportAdmin(AuditedAdmin, ImportExportMixin, ProfileAdmin):
    resource_classes = [ProfileResource]
    formats = [CSV, XLSX, JSON]

    def get_export_queryset(self, request):
        """An export is data leaving the platform: only profiles whose sale/sharing is allowed go."""
        profiles = super().get_export_queryset(request)
        return profiles.filter(id__in=sharing_allowed(profile_ids=list(profiles.values_list("id", flat=True))))
