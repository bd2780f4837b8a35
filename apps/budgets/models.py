"""Budgets: spending caps per organisation, each period its own row."""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from apps.core.audit import history_user
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

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

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

    def has_reached(self, threshold: int, spent: Decimal) -> bool:
        """Whether ``spent`` is at or past ``threshold`` percent of the limit: exact, the one
        test of the sweep and of ingestion (a zero limit is reached by any spending)."""
        if self.limit == 0:
            return spent > 0
        return spent * 100 >= self.limit * threshold

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
            or any(not isinstance(t, int) or isinstance(t, bool) for t in thresholds)
            or any(not 0 < t <= 100 for t in thresholds)
            or thresholds != sorted(set(thresholds))
        ):
            errors["thresholds"] = "Ascending, distinct whole percentages in (0, 100]."
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
    spent_before_budget = models.DecimalField(
        **AMOUNT, default=Decimal(0),
        help_text="What the period had already spent when the budget began counting it "
        "(created, or its scope changed, part-way through); included in spent.",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        permissions = [
            ("reset_budgetperiod", "Can reset a budget's current period"),
        ]
        ordering = ["budget", "-starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "starts_at"], name="budget_period_once"),
            models.CheckConstraint(condition=Q(spent__gte=0), name="budget_period_spent"),
        ]

    def __str__(self) -> str:
        return f"{self.budget} from {self.starts_at:%Y-%m-%d}"


class NotificationChannel(models.Model):
    """Where an organisation's alerts go: an email address or an Apprise URL (Slack,
    Discord, generic JSON webhooks, ...)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        APPRISE = "apprise", "Apprise URL"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="notification_channels"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    target = models.CharField(max_length=1000)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The last test message sent from the alert channels page, and its error if it failed.
    last_tested_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_test_error = models.TextField(blank=True, default="", editable=False)

    class Meta:
        ordering = ["organization", "kind", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind", "target"], name="notification_channel_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.target[:60]}"

    def clean(self) -> None:
        if self.kind == self.Kind.EMAIL:
            from django.core.validators import validate_email

            try:
                validate_email(self.target)
            except ValidationError:
                raise ValidationError({"target": "Not an email address."}) from None
        elif self.kind == self.Kind.APPRISE:
            import apprise

            if not apprise.Apprise().add(self.target):
                raise ValidationError({"target": "Not a URL Apprise can notify."})
            if not settings.ALERT_PRIVATE_TARGETS and is_private_target(self.target):
                raise ValidationError(
                    {"target": "Alerts go to public services only, not to private addresses."}
                )

    @property
    def display_target(self) -> str:
        """The target without what may be a secret: an Apprise URL's credentials, path and
        query (webhook tokens) are hidden; an email address is shown."""
        if self.kind == self.Kind.EMAIL:
            return self.target
        parts = urlsplit(self.target)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}/…" if parts.scheme else "(hidden)"


def is_private_target(url: str) -> bool:
    """Whether an Apprise URL names this machine or a private network by its address or as
    ``localhost`` (names are not resolved here: the portal's egress rules are the rest of
    the defence)."""
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host in ("localhost", "") or host.endswith(".localhost") or host.endswith(".internal"):
        return host != ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


class Alert(models.Model):
    """A budget period crossed a threshold. One row per (period, threshold): the database
    makes a second sweep, or a concurrent one, a no-op."""

    period = models.ForeignKey(BudgetPeriod, on_delete=models.CASCADE, related_name="alerts")
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(**AMOUNT)
    limit = models.DecimalField(**AMOUNT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [
            ("resend_alert", "Can resend alerts"),
        ]
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["period", "threshold"], name="alert_once"),
        ]

    def __str__(self) -> str:
        return f"{self.period.budget} at {self.threshold}%"


class AlertDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="alert_delivery_once"),
        ]

    def __str__(self) -> str:
        return f"{self.alert} → {self.channel} ({self.status})"
