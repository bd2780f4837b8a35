"""Celery tasks of the customers app: thin, idempotent, retried with backoff."""

from celery import shared_task

from apps.customers import wallets


@shared_task(bind=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def expire_credits(self) -> int:
    """Writes off expired credit grants; a second run finds nothing to do."""
    return wallets.expire_credits()


@shared_task(bind=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def reconcile_stripe(self) -> dict:
    """Daily: re-syncs customers, subscriptions and invoices from Stripe; reports fixes."""
    from django.conf import settings

    from apps.customers import billing

    if not settings.STRIPE_ENABLED:
        return {"customers": 0, "fixed": [], "skipped": "Stripe is not configured"}
    return billing.reconcile()


@shared_task(bind=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=8)
def sync_stripe_customer(self, organization_id: int) -> None:
    """Brings the Stripe customer's name and email in line with the organisation."""
    from apps.customers import billing
    from apps.customers.models import Organization

    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is not None:
        billing.sync_customer_details(organization)
