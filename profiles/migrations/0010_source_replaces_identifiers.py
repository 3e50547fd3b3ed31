
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0009_message_key_expiry_and_set_aside_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='source',
            name='replaces_identifiers',
            field=models.BooleanField(default=False, editable=False),
        ),
    ]
