from django.db import migrations


def create_builtin_service_types(apps, schema_editor):
    from apps.pricing.services import ensure_builtin_service_types

    ensure_builtin_service_types(apps.get_model("pricing", "ServiceType"))


class Migration(migrations.Migration):
    dependencies = [("pricing", "0001_initial")]

    operations = [
        migrations.RunPython(create_builtin_service_types, migrations.RunPython.noop),
    ]
