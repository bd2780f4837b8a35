"""Periodic jobs of the usage app."""

from __future__ import annotations

from celery import shared_task

from apps.usage import stripe_usage


@shared_task(
    acks_late=True, autoretry_for=(Exception,), retry_backoff=True, retry_backoff_max=600,
    max_retries=5,
)  # fmt: skip
def report_usage_to_stripe() -> dict:
    """Sends Stripe the postpaid usage it has not yet been sent (see ``stripe_usage``)."""
    run = stripe_usage.report_all()
    return {"events": run.events, "units": run.units, "recovered": run.recovered}
