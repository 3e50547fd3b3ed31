from django.db import migrations

from profiles.common.permissions import grant


def forwards(apps, schema_editor):
    # Importing writes profiles for anyone in the file: the Admin role's alone (it gets every permission).
    grant(apps, app_label="profiles", roles={"Admin": ["import_profiles"]})


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0011_profile_regime'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='profile',
            options={'permissions': [('view_personal_data', 'Can see email, phone, name and address unmasked'),
                                     ('import_profiles', 'Can import profiles from a file (admin)')]},
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
