from django.db import migrations


def install_schedules(apps, schema_editor):
    from apps.core import schedules

    schedules.install(
        schedules.MONTHLY_CLOSE,
        periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
        crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0006_statements"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install_schedules, migrations.RunPython.noop)]
