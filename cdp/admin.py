"""Profile import and export in the admin, and its audit. It lives in cdp because an imported row runs the whole
pipeline and an edit is audited by consent, both above profiles."""
from django.contrib import admin
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, JSON, XLSX

from cdp.resources import ProfileResource
from consent.admin import AuditedAdmin
from profiles.admin import ProfileAdmin
from profiles.models import Profile

admin.site.unregister(Profile)


@admin.register(Profile)
class ProfileImportExportAdmin(AuditedAdmin, ImportExportMixin, ProfileAdmin):
    resource_classes = [ProfileResource]
    formats = [CSV, XLSX, JSON]
