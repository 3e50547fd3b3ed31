"""Default identity rules and the three role groups."""
from django.db import migrations

from profiles.common.permissions import grant

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
    grant(apps, app_label=None, roles={"Admin": None})
    grant(apps, app_label="profiles", roles={name: codes for name, codes in ROLES.items() if codes is not None})
    IdentityRule = apps.get_model("profiles", "IdentityRule")
    for kind, priority, maximum in RULES:
        IdentityRule.objects.update_or_create(identifier_type=kind, defaults={
            "priority": priority, "max_per_profile": maximum, "blocked_values": BLOCKED})


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
