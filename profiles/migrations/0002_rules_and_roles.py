"""Default identity rules and the three role groups."""
from django.db import migrations

BLOCKED = ["null", "undefined", "none", "nil", "0", "-1", "anonymous", "unknown", "n/a", "na", "test",
           "test@example.com", "test@test.com", "email@example.com", "noemail@example.com", "[object object]"]
RULES = [
    ("user_id", 100, 1),
    ("email", 80, 5),
    ("phone", 70, 5),
    ("anonymous_id", 10, None),
]
ROLES = {
    "Admin": None,  # every permission
    "Marketer": ["view_profile", "view_identifier", "view_event", "view_traitchange", "view_mergerecord",
                 "view_source", "view_identityrule"],
    "Privacy officer": ["view_profile", "change_profile", "view_identifier", "view_event", "view_traitchange",
                        "view_mergerecord", "view_source", "view_identityrule"],
}


def forwards(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    IdentityRule = apps.get_model("profiles", "IdentityRule")
    for kind, priority, maximum in RULES:
        IdentityRule.objects.update_or_create(identifier_type=kind, defaults={
            "priority": priority, "max_per_profile": maximum, "blocked_values": BLOCKED})
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.all() if codenames is None else Permission.objects.filter(
            content_type__app_label="profiles", codename__in=codenames)
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
