from django.db import migrations

from profiles.common.permissions import grant


def forwards(apps, schema_editor):
    # Marketers run campaigns; privacy officers read what was shown to a subject.
    models = ["placement", "campaign", "programmesettings", "exposure", "conversion"]
    grant(apps, app_label="campaigns", roles={
        "Admin": None,
        "Marketer": [f"{action}_{model}" for model in models for action in ("view", "add", "change", "delete")],
        "Privacy officer": ["view_exposure", "view_conversion"]})


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
