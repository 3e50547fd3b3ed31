"""Granting permissions to the role groups from data migrations (Admin, Marketer, Privacy officer)."""


def grant(apps, *, app_label: str | None, roles: dict[str, list[str] | None]) -> None:
    """Gives each role group these permissions of the app (None: every permission of it; an `app_label` of
    None: of every app); idempotent.

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
