"""Privacy officers handle data subject requests; admins may do everything in consent."""
from django.db import migrations

from profiles.common.permissions import grant


def forwards(apps, schema_editor):
    grant(apps, app_label="consent", roles={"Admin": None, "Privacy officer": [
        "view_privacyrequest", "add_privacyrequest", "change_privacyrequest", "view_privacyrequesttransition"]})


class Migration(migrations.Migration):
    dependencies = [("consent", "0003_privacy_requests")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
