"""Demo budgets and an alert channel for the demo organisation (idempotent)."""

from __future__ import annotations

from decimal import Decimal

from apps.budgets.models import Budget, NotificationChannel
from apps.customers.models import Organization
from apps.pricing.models import ServiceType


def seed_budgets(organization: Organization) -> list[Budget]:
    specs = [
        ("Monthly spend", {"scope": Budget.Scope.ALL, "period": Budget.Period.MONTHLY,
                           "limit": Decimal(150), "is_hard": True, "thresholds": [50, 80, 100]}),
        ("Agent runs per day", {"scope": Budget.Scope.SERVICE_TYPE,
                                "service_type": ServiceType.objects.get(code="agent_execution"),
                                "period": Budget.Period.DAILY, "limit": Decimal(2),
                                "is_hard": False, "thresholds": [80, 100]}),
        ("Weekly model inference", {"scope": Budget.Scope.SERVICE_TYPE,
                                    "service_type": ServiceType.objects.get(code="model_inference"),
                                    "period": Budget.Period.WEEKLY, "limit": Decimal(60),
                                    "is_hard": False, "thresholds": [80, 100]}),
    ]  # fmt: skip
    budgets = []
    for name, fields in specs:
        budget, _ = Budget.objects.get_or_create(
            organization=organization,
            name=name,
            defaults={**fields, "currency": organization.currency},
        )
        budgets.append(budget)
    return budgets


def seed_channel(organization: Organization) -> NotificationChannel:
    channel, _ = NotificationChannel.objects.get_or_create(
        organization=organization,
        kind=NotificationChannel.Kind.EMAIL,
        target="alerts@demo.example",
    )
    return channel
