"""Privacy officers handle data subject requests; admins may do everything in consent."""
from django.db import migrations


def forwards(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    officer, _ = Group.objects.get_or_create(name="Privacy officer")
    officer.permissions.add(*Permission.objects.filter(content_type__app_label="consent", codename__in=[
        "view_privacyrequest", "add_privacyrequest", "change_privacyrequest", "view_privacyrequesttransition"]))
    admin, _ = Group.objects.get_or_create(name="Admin")
    admin.permissions.add(*Permission.objects.filter(content_type__app_label="consent"))


class Migration(migrations.Migration):
    dependencies = [("consent", "0003_privacy_requests")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
