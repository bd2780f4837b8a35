"""The staff groups again: statements and their lines now have permissions too."""

from django.db import migrations


def apply_groups(apps, schema_editor):
    from importlib import import_module

    import_module("apps.customers.migrations.0008_staff_groups").create_groups(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0011_audit_reason_text"),
        ("usage", "0007_close_schedule"),
        ("pricing", "0005_audit_reason_text"),
        ("budgets", "0007_audit_reason_text"),
    ]

    operations = [migrations.RunPython(apply_groups, migrations.RunPython.noop)]
