"""Periodic jobs, as data: django-celery-beat rows that data migrations create, so staff
see and change them in the admin. Installing twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    name: str
    task: str
    minute: str = "0"
    hour: str = "*"
    description: str = ""


CREDIT_EXPIRY = Job(
    name="Expire credit grants",
    task="apps.customers.tasks.expire_credits",
    minute="10",
    hour="0",
    description="Writes off what is left of expired promotional credits (daily, 00:10 UTC).",
)


def install(job: Job, *, periodic_task_model, crontab_model) -> None:
    """Creates (or brings back to its definition) the beat row of ``job``; the models are
    passed in so data migrations can hand over their historical ones."""
    crontab, _ = crontab_model.objects.get_or_create(
        minute=job.minute,
        hour=job.hour,
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone="UTC",
    )
    periodic_task_model.objects.update_or_create(
        name=job.name,
        defaults={"task": job.task, "crontab": crontab, "description": job.description},
    )
