"""Keeps the in-memory API keys (``selectors.ACCESS``) in step with the database."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.customers.models import ApiKey, Organization
from apps.customers.selectors import ACCESS
from apps.pricing.models import Plan


@receiver([post_save, post_delete], sender=ApiKey)
@receiver([post_save, post_delete], sender=Organization)
@receiver([post_save, post_delete], sender=Plan)
def _access_changed(sender, instance, **kwargs) -> None:
    if sender is ApiKey and kwargs.get("update_fields") == frozenset({"last_used_at"}):
        return
    ACCESS.invalidate()
