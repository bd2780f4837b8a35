"""Periodic jobs of the usage app."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.usage import stripe_usage

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5,
)  # fmt: skip
def report_usage_to_stripe() -> dict:
    """Sends Stripe the postpaid usage it has not yet been sent (see ``stripe_usage``)."""
    run = stripe_usage.report_all()
    return {"events": run.events, "units": run.units, "recovered": run.recovered}


@shared_task(
    acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=8,
)  # fmt: skip
def close_statement(organization_id: int, period_start: str, period_end: str) -> dict:
    """One period's close, resumed from its last finished step (``statements``)."""
    from datetime import datetime

    from apps.customers.models import Organization
    from apps.usage import statements

    statement = statements.close_period(
        organization=Organization.objects.get(pk=organization_id),
        period_start=datetime.fromisoformat(period_start),
        period_end=datetime.fromisoformat(period_end),
    )
    return {"statement": statement.pk, "status": statement.status}


@shared_task(acks_late=True)
def close_ended_periods() -> int:
    """celery-beat, daily: starts the close of every period that ended more than the
    grace window ago and has no final statement (each its own task)."""
    from apps.usage import statements

    due = statements.periods_due()
    for organization_id, start, end in due:
        try:
            close_statement.delay(organization_id, start.isoformat(), end.isoformat())
        except Exception:  # noqa: BLE001 - eager: an earlier period still open, say; retried
            logger.warning("Close of %s from %s not started", organization_id, start)
    return len(due)


@shared_task(
    acks_late=True, autoretry_for=(Exception,), retry_backoff=60, max_retries=6,
)  # fmt: skip
def send_statement(statement_id: int) -> None:
    """The statement to the organisation's billing contact: HTML with a chart, CSV lines."""
    from apps.usage import statements
    from apps.usage.models import Statement

    if Statement.objects.filter(pk=statement_id, notified_at__isnull=False).exists():
        return  # sent already (a second enqueue)
    statements.statement_email(statement_id).send()
    statements.mark_notified(statement_id)


@shared_task(acks_late=True)
def check_books() -> list[str]:
    """celery-beat, nightly: the invariants; differences are logged and mailed to the
    admins (finance), and returned."""
    import logging

    from django.core.mail import mail_admins

    from apps.usage.books import check_books as run

    differences = [str(difference) for difference in run()]
    if differences:
        logging.getLogger(__name__).error("The books do not balance: %s", differences)
        mail_admins("The books do not balance", "\n".join(differences), fail_silently=True)
    return differences
