"""Budgets: spending caps per organisation, each period its own row."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.customers.models import ApiKey, Organization
from apps.pricing.models import Product, ServiceType

AMOUNT = {"max_digits": 28, "decimal_places": 12}


def default_thresholds() -> list[int]:
    return [80, 100]


class Budget(models.Model):
    """A cap on what an organisation spends in a period (in its time zone), on everything
    or on one service type, product or API key. A hard budget refuses the event that would
    cross it; a soft one only alerts."""

    class Scope(models.TextChoices):
        ALL = "all", "Everything"
        SERVICE_TYPE = "service_type", "One service type"
        PRODUCT = "product", "One product"
        API_KEY = "api_key", "One API key"

    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"
        TOTAL = "total", "Total (never resets)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    service_type = models.ForeignKey(
        ServiceType, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTHLY)
    limit = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    is_hard = models.BooleanField(default=True)
    # Percentages of the limit at which an alert is raised, ascending, in (0, 100].
    thresholds = models.JSONField(default=default_thresholds)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(limit__gte=0), name="budget_limit_not_negative"),
            models.CheckConstraint(
                condition=(
                    Q(
                        scope="all",
                        service_type__isnull=True,
                        product__isnull=True,
                        api_key__isnull=True,
                    )
                    | Q(
                        scope="service_type",
                        service_type__isnull=False,
                        product__isnull=True,
                        api_key__isnull=True,
                    )
                    | Q(
                        scope="product",
                        product__isnull=False,
                        service_type__isnull=True,
                        api_key__isnull=True,
                    )
                    | Q(
                        scope="api_key",
                        api_key__isnull=False,
                        service_type__isnull=True,
                        product__isnull=True,
                    )
                ),
                name="budget_scope_matches_its_target",
            ),  # fmt: skip
        ]

    def __str__(self) -> str:
        return self.name

    def covers(self, *, service_type: str, product_id: int, api_key_id: int | None) -> bool:
        if self.scope == self.Scope.ALL:
            return True
        if self.scope == self.Scope.SERVICE_TYPE:
            return self.service_type_id == service_type
        if self.scope == self.Scope.PRODUCT:
            return self.product_id == product_id
        return api_key_id is not None and self.api_key_id == api_key_id

    def clean(self) -> None:
        errors = {}
        if self.limit is not None and (not self.limit.is_finite() or self.limit < 0):
            errors["limit"] = "A finite amount, not negative."
        elif self.is_hard and self.limit == 0:
            errors["limit"] = "A hard budget needs a limit above zero."
        if self.organization_id and self.currency != self.organization.currency:
            errors["currency"] = f"Budgets are in the organisation's {self.organization.currency}."
        thresholds = self.thresholds
        if (
            not isinstance(thresholds, list)
            or not thresholds
            or any(not isinstance(t, int | float) or isinstance(t, bool) for t in thresholds)
            or any(not 0 < t <= 100 for t in thresholds)
            or thresholds != sorted(set(thresholds))
        ):
            errors["thresholds"] = "Ascending, distinct percentages in (0, 100]."
        if self.api_key_id and self.api_key.organization_id != self.organization_id:
            errors["api_key"] = "Not a key of this organisation."
        if errors:
            raise ValidationError(errors)


class BudgetPeriod(models.Model):
    """One period of a budget and what was spent in it. Opening the next period is the
    reset; a period is unique per budget and start, so opening it twice is a no-op."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="periods")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)  # none for a total budget
    spent = models.DecimalField(**AMOUNT, default=Decimal(0))
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["budget", "-starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "starts_at"], name="budget_period_once"),
            models.CheckConstraint(condition=Q(spent__gte=0), name="budget_period_spent"),
        ]

    def __str__(self) -> str:
        return f"{self.budget} from {self.starts_at:%Y-%m-%d}"
