"""Marketers manage webhook destinations and resend deliveries; privacy officers see where data went."""
from django.db import migrations

from profiles.common.permissions import grant


def forwards(apps, schema_editor):
    grant(apps, app_label="segments", roles={
        "Admin": None,
        "Marketer": ["view_destination", "add_destination", "change_destination", "delete_destination",
                     "view_delivery", "change_delivery", "view_deliveryattempt"],
        "Privacy officer": ["view_destination", "view_delivery", "view_deliveryattempt"]})


class Migration(migrations.Migration):
    dependencies = [("segments", "0001_initial"), ("profiles", "0002_rules_and_roles")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
