"""Roles (Admin, Marketer, Privacy officer) are Django groups; the API checks them through model permissions."""
from rest_framework.permissions import DjangoModelPermissions

ADMIN = "Admin"
MARKETER = "Marketer"
PRIVACY_OFFICER = "Privacy officer"


class RoleModelPermissions(DjangoModelPermissions):
    """Like DRF's, but reading also needs the model's view permission: a token sees only what its role may."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": ["%(app_label)s.view_%(model_name)s"],
                 "HEAD": ["%(app_label)s.view_%(model_name)s"], "OPTIONS": []}


def admin_role_has_every_permission(**kwargs) -> None:
    """The Admin role may do everything, including what models added by later migrations allow (post_migrate)."""
    from django.contrib.auth.models import Group, Permission

    Group.objects.get_or_create(name=ADMIN)[0].permissions.add(*Permission.objects.all())


def grant(apps, *, app_label: str | None, roles: dict[str, list[str] | None]) -> None:
    """Gives each role group these permissions of the app (None: every permission of it; an `app_label` of
    None: of every app), from a data migration; idempotent.

    Permissions are created first: Django only creates them after all migrations ran, too late for a data
    migration that grants them.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in roles.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = Permission.objects.all() if app_label is None else Permission.objects.filter(
            content_type__app_label=app_label)
        group.permissions.add(*(permissions if codenames is None else permissions.filter(codename__in=codenames)))
