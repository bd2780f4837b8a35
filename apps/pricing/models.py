"""The catalog: service types, products (meters), plans, inclusions and versioned prices."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from apps.core.audit import history_user
from apps.pricing.cost_engine import PricingModel
from apps.pricing.currencies import CURRENCY_CHOICES

code_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]*$", "Lower-case letters, digits, dots, dashes and underscores."
)
dimension_validator = RegexValidator(r"^[a-z][a-z0-9_]*$", "Lower-case letters, digits, _.")

# Quantities up to 10^15 with 12 decimal places; prices with 12 decimal places (a token can
# cost 0.000000075).
QUANTITY = {"max_digits": 28, "decimal_places": 12}
PRICE = {"max_digits": 24, "decimal_places": 12}
MONEY = {"max_digits": 18, "decimal_places": 4}


class BillingMethod(models.TextChoices):
    """How a billed event is paid (seed 003)."""

    SUBSCRIPTION_INCLUDED = "subscription_included", "Included in the subscription"
    CREDIT_CONSUMPTION = "credit_consumption", "Promotional credits"
    WALLET_DEDUCTION = "wallet_deduction", "Prepaid wallet"
    PAYMENT_CHARGE = "payment_charge", "Charged to the payment method"


class BuiltinServiceType(models.TextChoices):
    MODEL_INFERENCE = "model_inference", "Model inference"
    MCP_SERVICE = "mcp_service", "MCP tool calls"
    AGENT_EXECUTION = "agent_execution", "Agent executions"
    STORAGE_MINIO = "storage_minio", "Object storage"
    API_GATEWAY = "api_gateway", "API gateway"
    NOTIFICATION = "notification", "Notifications"


class ServiceType(models.Model):
    """A family of products (seed 003's service types, plus custom ones staff add)."""

    code = models.CharField(max_length=64, primary_key=True, validators=[code_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Unit(models.TextChoices):
    TOKEN = "token", "tokens"
    REQUEST = "request", "requests"
    EXECUTION = "execution", "executions"
    CALL = "call", "calls"
    GB_MONTH = "gb_month", "GB-month"
    MESSAGE = "message", "messages"
    SECOND = "second", "seconds"
    UNIT = "unit", "units"


def default_dimensions() -> list[str]:
    return ["units"]


class Product(models.Model):
    """Something metered and sold: a model, a tool, storage. Its dimensions are what a price
    rule can price separately (``units``; ``input_tokens`` and ``output_tokens``); the first
    dimension takes a bare ``usage_amount``."""

    code = models.CharField(max_length=100, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    service_type = models.ForeignKey(ServiceType, on_delete=models.PROTECT, related_name="+")
    unit = models.CharField(max_length=16, choices=Unit.choices, default=Unit.UNIT)
    dimensions = models.JSONField(default=default_dimensions)
    provider = models.CharField(max_length=100, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    # Postpaid usage reaches Stripe as meter events on this product's meter, valued in
    # millionths of the currency unit, against a metered price of that worth
    # (``sync_stripe_catalog``; ``usage.stripe_usage``).
    stripe_product_id = models.CharField(max_length=255, blank=True, default="")
    stripe_meter_id = models.CharField(max_length=255, blank=True, default="")
    stripe_meter_event_name = models.CharField(max_length=100, blank=True, default="")
    stripe_price_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["service_type", "code"]

    def __str__(self) -> str:
        return self.code

    @property
    def default_dimension(self) -> str:
        return self.dimensions[0]

    def clean(self) -> None:
        if not isinstance(self.dimensions, list) or not self.dimensions:
            raise ValidationError({"dimensions": "A list of at least one dimension."})
        for dimension in self.dimensions:
            if not isinstance(dimension, str):
                raise ValidationError({"dimensions": "Dimensions are names."})
            try:
                dimension_validator(dimension)
            except ValidationError as error:
                raise ValidationError({"dimensions": error.messages}) from None
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValidationError({"dimensions": "Dimensions must be distinct."})


class Plan(models.Model):
    class Interval(models.TextChoices):
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"

    code = models.CharField(max_length=64, unique=True, validators=[code_validator])
    name = models.CharField(max_length=100)
    # free / starter / pro / enterprise, or a tier staff define.
    tier = models.CharField(max_length=32, validators=[code_validator], default="starter")
    description = models.TextField(blank=True)
    billing_interval = models.CharField(
        max_length=8, choices=Interval.choices, default=Interval.MONTH
    )
    base_fee = models.DecimalField(**MONEY, default=Decimal(0), validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, default="USD")
    trial_days = models.PositiveIntegerField(default=0)
    is_public = models.BooleanField(default=True)
    is_active = models.BooleanField(default=True)
    # The plan an organisation without one is on.
    is_default = models.BooleanField(default=False)
    sort_order = models.PositiveIntegerField(default=0)
    # The Stripe product and recurring price of the base fee (``sync_stripe_catalog``).
    stripe_product_id = models.CharField(max_length=255, blank=True, default="")
    stripe_price_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["sort_order", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="plan_single_default"
            ),
            models.CheckConstraint(condition=Q(base_fee__gte=0), name="plan_base_fee_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class Period(models.TextChoices):
    DAY = "day", "per day"
    WEEK = "week", "per week"
    MONTH = "month", "per month"
    YEAR = "year", "per year"


class IncludedQuota(models.Model):
    """A quantity the plan includes per period, for one product or a whole service type
    (e.g. 1,000,000 model-inference tokens a month in Pro)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="included_quotas")
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    service_type = models.ForeignKey(
        ServiceType, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    quantity = models.DecimalField(**QUANTITY, validators=[MinValueValidator(0)])
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["plan", "service_type", "product"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(product__isnull=False, service_type__isnull=True)
                    | Q(product__isnull=True, service_type__isnull=False)
                ),
                name="included_quota_one_scope",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=0), name="included_quota_not_negative"
            ),
            models.UniqueConstraint(
                fields=["plan", "product", "period"],
                condition=Q(product__isnull=False),
                name="included_quota_unique_product",
            ),
            models.UniqueConstraint(
                fields=["plan", "service_type", "period"],
                condition=Q(service_type__isnull=False),
                name="included_quota_unique_service_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.product or self.service_type} {self.get_period_display()}"

    def clean(self) -> None:
        if (self.product_id is None) == (self.service_type_id is None):
            raise ValidationError("Name either a product or a service type.")


class PriceRule(models.Model):
    """One version of the price of one dimension of one product, for one plan or (with no
    plan) for the whole catalog. Plans inherit the catalog's rule unless they have their own.

    Versions of the same (plan, product, dimension) never overlap in time: a price change is
    a new version from its ``effective_from``; the one before it ends there."""

    plan = models.ForeignKey(
        Plan, on_delete=models.CASCADE, null=True, blank=True, related_name="price_rules"
    )
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="price_rules")
    dimension = models.CharField(max_length=64, validators=[dimension_validator], default="units")
    pricing_model = models.CharField(
        max_length=16,
        choices=[(model, model.replace("_", " ")) for model in PricingModel.ALL],
        default=PricingModel.PER_UNIT,
    )
    unit_price = models.DecimalField(**PRICE, default=Decimal(0))
    package_size = models.DecimalField(**QUANTITY, null=True, blank=True)
    package_price = models.DecimalField(**PRICE, default=Decimal(0))
    free_allowance = models.DecimalField(**QUANTITY, default=Decimal(0))
    # Per billing period: a statement tops the period's charges of this rule up to it.
    minimum_charge = models.DecimalField(**MONEY, default=Decimal(0))
    effective_from = models.DateTimeField(default=timezone.now)
    effective_to = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["product", "dimension", "plan", "-effective_from"]
        indexes = [models.Index(fields=["product", "plan", "dimension", "effective_from"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_to__gt=models.F("effective_from")),
                name="price_rule_period_ordered",
            ),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0, package_price__gte=0, free_allowance__gte=0)
                & Q(minimum_charge__gte=0),
                name="price_rule_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=~Q(pricing_model="package") | Q(package_size__gt=0),
                name="price_rule_package_has_size",
            ),
            models.UniqueConstraint(
                fields=["plan", "product", "dimension", "effective_from"],
                condition=Q(plan__isnull=False),
                name="price_rule_unique_plan_version",
            ),
            models.UniqueConstraint(
                fields=["product", "dimension", "effective_from"],
                condition=Q(plan__isnull=True),
                name="price_rule_unique_catalog_version",
            ),
        ]

    def __str__(self) -> str:
        scope = self.plan.code if self.plan_id else "catalog"
        return f"{self.product} · {self.dimension} · {scope} from {self.effective_from:%Y-%m-%d}"

    def is_effective_at(self, instant) -> bool:
        return self.effective_from <= instant and (
            self.effective_to is None or instant < self.effective_to
        )


class PriceTier(models.Model):
    rule = models.ForeignKey(PriceRule, on_delete=models.CASCADE, related_name="tiers")
    # Inclusive upper bound; the last tier has none.
    up_to = models.DecimalField(**QUANTITY, null=True, blank=True)
    unit_price = models.DecimalField(**PRICE, default=Decimal(0))
    flat_fee = models.DecimalField(**PRICE, default=Decimal(0))

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["rule", models.F("up_to").asc(nulls_last=True)]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_price__gte=0, flat_fee__gte=0), name="price_tier_not_negative"
            ),
            models.UniqueConstraint(fields=["rule", "up_to"], name="price_tier_unique_bound"),
        ]

    def __str__(self) -> str:
        bound = "∞" if self.up_to is None else self.up_to
        return f"up to {bound} at {self.unit_price}"
