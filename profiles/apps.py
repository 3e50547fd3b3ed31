from django.apps import AppConfig
from django.db.models.signals import post_migrate


def admin_role_has_every_permission(**kwargs):
    """The Admin role may do everything, including what models added by later migrations allow."""
    from django.contrib.auth.models import Group, Permission

    Group.objects.get_or_create(name="Admin")[0].permissions.add(*Permission.objects.all())


class ProfilesConfig(AppConfig):
    name = "profiles"

    def ready(self):
        # Runs after every app's permissions exist (Django creates them on post_migrate too); idempotent.
        post_migrate.connect(admin_role_has_every_permission, dispatch_uid="profiles.admin_role")
