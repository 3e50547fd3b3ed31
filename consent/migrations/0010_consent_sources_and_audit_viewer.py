"""Where a choice came from, truly: recorded by a privacy officer, or by carrying out a privacy request. Privacy
officers read the audit log (its viewer in the privacy screens)."""
from django.db import migrations, models

from profiles.common.permissions import grant

SOURCES = [('api', 'REST API'), ('collection', 'Collection API message'), ('web_form', 'Web form'),
           ('import', 'Import'), ('tcf', 'IAB TCF string'), ('gpc', 'Global Privacy Control'), ('admin', 'Admin'),
           ('merge', 'Profile merge'), ('privacy_officer', 'Recorded by a privacy officer'),
           ('privacy_request', 'Privacy request carried out')]


def forwards(apps, schema_editor):
    grant(apps, app_label="consent", roles={"Admin": None, "Privacy officer": ["view_auditentry"]})


class Migration(migrations.Migration):

    dependencies = [
        ('consent', '0009_consentstate_by_purpose_and_choice'),
    ]

    operations = [
        migrations.AlterField(
            model_name='consententry',
            name='source',
            field=models.CharField(choices=SOURCES, max_length=16),
        ),
        migrations.AlterField(
            model_name='consentstate',
            name='source',
            field=models.CharField(choices=SOURCES, max_length=16),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
