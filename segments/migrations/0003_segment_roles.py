from django.db import migrations

from profiles.common.permissions import grant


def forwards(apps, schema_editor):
    # Marketers own segments, their lists and memberships; privacy officers read them (a subject's memberships).
    models = ["segment", "segmentmembership", "staticmember", "segmentsize"]
    grant(apps, app_label="segments", roles={
        "Admin": None,
        "Marketer": [f"{action}_{model}" for model in models for action in ("view", "add", "change", "delete")],
        "Privacy officer": ["view_segment", "view_segmentmembership"]})


class Migration(migrations.Migration):
    dependencies = [("segments", "0002_destination_roles")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
