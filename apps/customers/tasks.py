"""Celery tasks of the customers app: thin, idempotent, retried with backoff."""

from celery import shared_task

from apps.customers import wallets


@shared_task(bind=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def expire_credits(self) -> int:
    """Writes off expired credit grants; a second run finds nothing to do."""
    return wallets.expire_credits()
