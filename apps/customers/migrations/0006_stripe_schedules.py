from django.db import migrations


def install_schedules(apps, schema_editor):
    from apps.core import schedules

    for job in (
        schedules.STRIPE_USAGE,
        schedules.STRIPE_RECONCILE,
        schedules.STRIPE_WEBHOOK_SWEEP,
    ):
        schedules.install(
            job,
            periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
            crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
        )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0005_stripe_links"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install_schedules, migrations.RunPython.noop)]
