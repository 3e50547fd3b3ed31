from django.db import migrations

from profiles.common.permissions import grant


def roles(apps, schema_editor):
    # Marketers own segments and their destinations; privacy officers read them (a subject's memberships).
    grant(apps, app_label="segments", roles={"Admin": None, "Marketer": None, "Privacy officer": [
        "view_segment", "view_segmentmembership", "view_destination", "view_delivery"]})


class Migration(migrations.Migration):
    dependencies = [("segments", "0001_initial"), ("profiles", "0002_rules_and_roles")]
    operations = [migrations.RunPython(roles, migrations.RunPython.noop)]
