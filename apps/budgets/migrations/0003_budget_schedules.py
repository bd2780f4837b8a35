from django.db import migrations


def install_schedules(apps, schema_editor):
    from apps.core import schedules

    for job in (schedules.BUDGET_SWEEP, schedules.BUDGET_PERIODS):
        schedules.install(
            job,
            periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
            crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
        )


class Migration(migrations.Migration):
    dependencies = [
        ("budgets", "0002_alert_notificationchannel_alertdelivery_and_more"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install_schedules, migrations.RunPython.noop)]
