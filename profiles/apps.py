from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProfilesConfig(AppConfig):
    name = "profiles"

    def ready(self):
        from profiles import tasks  # noqa: F401  (registers the app's tasks in every process, web included)
        from profiles.common.permissions import admin_role_has_every_permission

        # Runs after every app's permissions exist (Django creates them on post_migrate too); idempotent.
        post_migrate.connect(admin_role_has_every_permission, dispatch_uid="profiles.admin_role")
