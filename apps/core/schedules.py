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


BUDGET_SWEEP = Job(
    name="Budget sweep",
    task="apps.budgets.tasks.sweep_budgets",
    minute="*/15",
    description="Alerts for budgets past a threshold, once per period and threshold.",
)

BUDGET_PERIODS = Job(
    name="Open budget periods",
    task="apps.budgets.tasks.open_budget_periods",
    minute="1",
    description="Opens each active budget's current period (hourly: boundaries fall on "
    "local midnights in every time zone); running late or twice changes nothing.",
)


STRIPE_USAGE = Job(
    name="Report usage to Stripe",
    task="apps.usage.tasks.report_usage_to_stripe",
    minute="20",
    description="Sends Stripe's meters the postpaid usage not yet sent (hourly); a rerun "
    "or a crashed run never reports a unit twice.",
)

STRIPE_RECONCILE = Job(
    name="Reconcile with Stripe",
    task="apps.customers.tasks.reconcile_stripe",
    minute="30",
    hour="3",
    description="Re-syncs customers, subscriptions and invoices from Stripe so a missed "
    "webhook heals (daily, 03:30 UTC); its result lists what it fixed.",
)

STRIPE_WEBHOOK_SWEEP = Job(
    name="Process pending Stripe webhooks",
    task="apps.customers.webhooks.process_pending_webhooks",
    minute="*/5",
    description="Enqueues verified Stripe deliveries still unprocessed after a minute.",
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


MONTHLY_CLOSE = Job(
    name="Close ended billing periods",
    task="apps.usage.tasks.close_ended_periods",
    minute="0",
    hour="4",
    description="Starts the close of every billing period that ended more than "
    "STATEMENT_GRACE_HOURS ago (daily, 04:00 UTC); each close resumes where it stopped and "
    "never runs a step twice.",
)

BOOKS_CHECK = Job(
    name="Check the books",
    task="apps.usage.tasks.check_books",
    minute="30",
    hour="4",
    description="Wallets and credits equal their ledgers, every event has its record, "
    "statements cover the records of closed periods, Stripe's meters have every postpaid "
    "unit (nightly, 04:30 UTC); differences are mailed to the admins.",
)
