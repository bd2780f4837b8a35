from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.core import schedules
from apps.customers import tasks, wallets

pytestmark = pytest.mark.django_db


def test_the_credit_expiry_job_is_installed_once_however_often_it_is_installed():
    for _ in range(2):
        schedules.install(
            schedules.CREDIT_EXPIRY,
            periodic_task_model=PeriodicTask,
            crontab_model=CrontabSchedule,
        )

    job = PeriodicTask.objects.get(name="Expire credit grants")
    assert job.task == "apps.customers.tasks.expire_credits"
    assert (job.crontab.hour, job.crontab.minute) == ("0", "10")
    assert PeriodicTask.objects.filter(task=job.task).count() == 1


def test_the_credit_expiry_task_writes_off_expired_grants_once(organization):
    grant = wallets.grant_credits(
        organization=organization, amount=D(5), reason="r", granted_by="t",
        expires_at=timezone.now() - timedelta(minutes=1),
    )  # fmt: skip

    assert tasks.expire_credits.delay().get() == 1
    assert tasks.expire_credits.delay().get() == 0
    grant.refresh_from_db()
    assert grant.remaining == 0


@pytest.mark.parametrize(
    "job",
    [
        schedules.STRIPE_USAGE,
        schedules.STRIPE_RECONCILE,
        schedules.STRIPE_WEBHOOK_SWEEP,
        schedules.MONTHLY_CLOSE,
        schedules.BOOKS_CHECK,
    ],  # fmt: skip
)
def test_the_stripe_jobs_name_tasks_celery_knows(job):
    from billing_portal.celery import app

    app.loader.import_default_modules()
    schedules.install(job, periodic_task_model=PeriodicTask, crontab_model=CrontabSchedule)

    assert PeriodicTask.objects.get(name=job.name).task in app.tasks
