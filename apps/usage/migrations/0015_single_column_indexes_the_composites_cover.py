"""The single-column indexes on usage events' and billing records' organisation and on
billing events' record go: composite indexes that start with the same column serve every
read, and each index costs every insert. Dropped without locking writes out
(CONCURRENTLY, on PostgreSQL) and without touching the foreign keys."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = [
    ("usage_billingevent", "record_id", "usage_billingevent_record_id_b96e06d5"),
    ("usage_billingrecord", "organization_id", "usage_billingrecord_organization_id_a49232c2"),
    ("usage_usageevent", "organization_id", "usage_usageevent_organization_id_9e78bf2d"),
]


def drop(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for _, _, name in INDEXES:
        schema_editor.execute(f'DROP INDEX{concurrently} IF EXISTS "{name}"')


def create(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for table, column, name in INDEXES:
        schema_editor.execute(
            f'CREATE INDEX{concurrently} IF NOT EXISTS "{name}" ON "{table}" ("{column}")'
        )


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("customers", "0013_billing_anchor"),
        ("usage", "0014_staff_groups_with_meters"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="billingevent",
                    name="record",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="usage.billingrecord",
                    ),
                ),
                migrations.AlterField(
                    model_name="billingrecord",
                    name="organization",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="customers.organization",
                    ),
                ),
                migrations.AlterField(
                    model_name="usageevent",
                    name="organization",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="customers.organization",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create)],
        ),
    ]
