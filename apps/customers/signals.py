"""Keeps the in-memory API keys (``selectors.ACCESS``) in step with the database."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.customers.models import ApiKey, Organization
from apps.customers.selectors import ACCESS
from apps.pricing.models import Plan


@receiver([post_save, post_delete], sender=ApiKey)
@receiver([post_save, post_delete], sender=Organization)
@receiver([post_save, post_delete], sender=Plan)
def _access_changed(sender, instance, **kwargs) -> None:
    ACCESS.invalidate()


@receiver(post_save, sender=Organization)
def _sync_stripe_customer(sender, instance, created, **kwargs) -> None:
    """A renamed organisation or a new billing email reaches its Stripe customer (a task,
    after commit; it does nothing when they already agree or there is no customer)."""
    if created or not settings.STRIPE_ENABLED:
        return
    fields = kwargs.get("update_fields")
    if fields is not None and not {"name", "billing_email"} & set(fields):
        return
    from apps.customers.tasks import sync_stripe_customer

    transaction.on_commit(lambda: sync_stripe_customer.delay(instance.pk))
