from django.db import migrations

from profiles.common.permissions import grant


def forwards(apps, schema_editor):
    # Marketers run clusterings and models and keep the catalog; privacy officers read what was learned about
    # a person (their recommendations; scores are computed traits of the profile).
    models = ["clusteringrun", "cluster", "predictivemodel", "modelversion", "item", "recommenderrun"]
    grant(apps, app_label="segments", roles={
        "Admin": None,
        "Marketer": [f"{action}_{model}" for model in models for action in ("view", "add", "change", "delete")]
        + ["view_recommendations", "view_itemneighbours"],
        "Privacy officer": ["view_recommendations"]})


class Migration(migrations.Migration):
    dependencies = [("segments", "0007_learning")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
