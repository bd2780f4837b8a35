"""Celery tasks of the budgets app: thin, idempotent, acknowledged late."""

import logging

from celery import shared_task

from apps.budgets import services

logger = logging.getLogger(__name__)


@shared_task(bind=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def sweep_budgets(self, budget_ids=None) -> int:
    """Raises due alerts and hands each delivery to its own task."""
    delivery_ids = services.raise_alerts(budget_ids=budget_ids)
    for delivery_id in delivery_ids:
        try:
            deliver_alert.delay(delivery_id)
        except Exception:  # run in-process (eager), a failed delivery stays recorded
            logger.warning("Alert delivery %s failed; the next sweep retries", delivery_id)
    return len(delivery_ids)


@shared_task(
    bind=True,
    autoretry_for=(services.DeliveryFailed,),
    retry_backoff=30,
    max_retries=6,
)
def deliver_alert(self, delivery_id: int) -> str:
    return services.deliver(delivery_id=delivery_id)


@shared_task(bind=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def open_budget_periods(self) -> int:
    return services.open_current_periods()
