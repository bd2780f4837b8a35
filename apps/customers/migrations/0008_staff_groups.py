"""The staff groups (finance, support, read-only) with their permissions."""

from django.db import migrations


def create_groups(apps, schema_editor):
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    # Permissions are otherwise created after all migrations ran: make them now.
    for app_config in global_apps.get_app_configs():
        original = app_config.models_module
        app_config.models_module = app_config.models_module or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = original

    from apps.core import staff

    staff.apply(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_groups(apps, schema_editor):
    from apps.core import staff

    apps.get_model("auth", "Group").objects.filter(
        name__in=[staff.FINANCE, staff.SUPPORT, staff.READ_ONLY]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("customers", "0007_admin_permissions"),
        ("pricing", "0003_stripe_links"),
        ("usage", "0005_admin_permissions"),
        ("budgets", "0005_admin_permissions"),
        ("djstripe", "0003_2_11"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
