"""The staff groups again: meters have permissions now (finance defines them)."""

from django.db import migrations


def apply_groups(apps, schema_editor):
    from importlib import import_module

    import_module("apps.customers.migrations.0008_staff_groups").create_groups(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0013_meters"),
        ("customers", "0012_staff_groups_with_statements"),
        ("pricing", "0005_audit_reason_text"),
        ("budgets", "0007_audit_reason_text"),
    ]

    operations = [migrations.RunPython(apply_groups, migrations.RunPython.noop)]
