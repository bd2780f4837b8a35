from django.db import migrations


def install_schedule(apps, schema_editor):
    from apps.core import schedules

    schedules.install(
        schedules.CREDIT_EXPIRY,
        periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
        crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0003_creditgrant_creditentry_wallet_walletentry_and_more"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install_schedule, migrations.RunPython.noop)]
