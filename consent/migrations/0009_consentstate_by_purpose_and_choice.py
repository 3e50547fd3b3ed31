"""Consent states indexed by purpose and choice (for the consent filter), instead of by purpose alone."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("consent", "0008_rectification_changes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="consentstate",
            index=models.Index(fields=["purpose", "granted", "profile"], name="consentstate_purpose_choice"),
        ),
        migrations.AlterField(
            model_name="consentstate",
            name="purpose",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                    to="consent.purpose"),
        ),
    ]
