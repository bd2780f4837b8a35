"""The staff groups again, now that the audit history's models have permissions."""

from django.db import migrations


def apply_groups(apps, schema_editor):
    from importlib import import_module

    import_module("apps.customers.migrations.0008_staff_groups").create_groups(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0009_audit_history"),
        ("pricing", "0004_audit_history"),
        ("budgets", "0006_audit_history"),
    ]

    operations = [migrations.RunPython(apply_groups, migrations.RunPython.noop)]
