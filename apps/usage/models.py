"""Usage events, their billing records and billing events, period counters and rollups,
and the meters that read CloudEvents into usage."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from apps.core.audit import history_user
from apps.core.ledger import AppendOnlyModel
from apps.customers.models import ApiKey, Organization
from apps.pricing.models import BillingMethod, Product

QUANTITY = {"max_digits": 28, "decimal_places": 12}
AMOUNT = {"max_digits": 28, "decimal_places": 12}


class UsageEvent(models.Model):
    """One accepted unit of usage; immutable once accepted. ``(organization,
    idempotency_key)`` is unique: a retried post never records twice."""

    # Reads by organisation use the composite indexes below, which start with it: a
    # single-column index of its own would only cost every insert.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    idempotency_key = models.CharField(max_length=255)
    # SHA-256 of the event's canonical content: the same key with other content is a
    # conflict, not a retry.
    fingerprint = models.CharField(max_length=64)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    service_type = models.CharField(max_length=64)
    user_id = models.CharField(max_length=255, blank=True, default="")
    session_id = models.CharField(max_length=255, blank=True, default="")
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    quantity = models.DecimalField(**QUANTITY)
    quantities = models.JSONField(default=dict)  # dimension -> quantity (as strings)
    usage_details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"], name="usage_event_idempotent"
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_event_quantity"),
        ]
        indexes = [
            models.Index(fields=["organization", "occurred_at"]),
            models.Index(fields=["organization", "user_id", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.idempotency_key}"


class BillingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class BillingRecord(models.Model):
    """What one usage event costs and how it is paid (seed 003's billing_records)."""

    billing_id = models.CharField(max_length=40, unique=True)
    event = models.OneToOneField(
        UsageEvent, on_delete=models.PROTECT, related_name="billing_record"
    )
    # Reads by organisation use the composite indexes below, which start with it: a
    # single-column index of its own would only cost every insert.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    user_id = models.CharField(max_length=255, blank=True, default="")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    service_type = models.CharField(max_length=64)
    usage_amount = models.DecimalField(**QUANTITY)
    included_quantity = models.DecimalField(**QUANTITY, default=0)
    # Effective price per unit and full-precision total, as charged: history never changes.
    unit_price = models.DecimalField(**AMOUNT)
    total_amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    billing_method = models.CharField(max_length=32, choices=BillingMethod.choices)
    status = models.CharField(max_length=16, choices=BillingStatus.choices)
    # Per dimension: quantity, included, free, billable, unit price, amount, price rule id.
    breakdown = models.JSONField(default=list)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [
            ("refund_billingrecord", "Can refund billing records"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(total_amount__gte=0, usage_amount__gte=0),
                name="billing_record_amounts_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["organization", "user_id", "created_at"]),
            models.Index(fields=["organization", "status"]),
            # The dashboard's failed payments: a small index of the few failed records.
            models.Index(
                fields=["status"], condition=Q(status="failed"), name="billing_record_failed"
            ),
        ]

    def __str__(self) -> str:
        return self.billing_id


class BillingEvent(AppendOnlyModel):
    """One transition of a billing record's status (seed 003's billing_events)."""

    # (Its index is the composite one below, which starts with it.)
    record = models.ForeignKey(
        BillingRecord, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, choices=BillingStatus.choices)
    billing_method = models.CharField(max_length=32, choices=BillingMethod.choices)
    amount = models.DecimalField(**AMOUNT, default=0)
    actor = models.CharField(max_length=255)
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["record", "created_at"])]

    def __str__(self) -> str:
        return f"{self.record_id}: {self.from_status or '∅'} → {self.to_status}"


class UsageCounter(models.Model):
    """What an organisation used of something in one period: the billable units of a
    product's dimension (for tiers and allowances) or the units of a plan inclusion. The
    row is locked while an event is priced, so concurrent events never price the same
    position twice."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)  # "price:<product>:<dimension>", "include:<scope>"
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    quantity = models.DecimalField(**QUANTITY, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key", "period_start"], name="usage_counter_once"
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_counter_quantity"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.period_start:%Y-%m-%d}: {self.quantity}"


class DailyUsage(models.Model):
    """The daily rollup every usage read uses: per organisation, product, end user, day (in
    the organisation's time zone) and billing method. Kept current at ingestion by upsert."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    service_type = models.CharField(max_length=64)
    user_id = models.CharField(max_length=255, blank=True, default="")
    billing_method = models.CharField(max_length=32, choices=BillingMethod.choices)
    day = models.DateField()
    quantity = models.DecimalField(**QUANTITY, default=0)
    cost = models.DecimalField(**AMOUNT, default=0)
    event_count = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "product", "user_id", "billing_method", "day"],
                name="daily_usage_once",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "day"]),
            models.Index(fields=["day"]),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.product_id} {self.day}"


class StripeUsageReport(AppendOnlyModel):
    """One meter event sent to Stripe: the postpaid cost of an organisation's product on a
    day, reported as the difference between what the rollup now holds and what earlier
    reports sent. Append-only; the identifier is derived from what was reported before, so
    a run that crashed after Stripe took the event sends the same identifier again and
    Stripe keeps one."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    # Where a subscription period starts inside the day, the part of the day from that
    # instant is its own stream (so each invoice bills its own period's usage); empty for
    # the day's first part, or the whole day.
    segment_start = models.DateTimeField(null=True, blank=True)
    value = models.BigIntegerField(help_text="Meter units sent (millionths of the currency).")
    identifier = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=255)
    event_name = models.CharField(max_length=100)
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-reported_at"]
        indexes = [models.Index(fields=["organization", "product", "day"])]

    def __str__(self) -> str:
        return self.identifier


class Statement(models.Model):
    """What an organisation owes for one billing period, line by line: built at the close
    from its billing records, cross-checked against the daily rollup, final once checked.
    A final statement is never edited: late usage and refunds land on the next one."""

    class Status(models.TextChoices):
        OPEN = "open", "Open (being closed)"
        MISMATCH = "mismatch", "Stopped: records and rollup disagree"
        FINAL = "final", "Final"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3)
    plan = models.ForeignKey(
        "pricing.Plan", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Totals, each the sum of its rounded lines; ``unrounded_usage`` is the sum of the
    # events' own costs, so ``rounding_difference`` shows what rounding per line moved.
    usage_total = models.DecimalField(**AMOUNT, default=0)
    unrounded_usage = models.DecimalField(**AMOUNT, default=0)
    rounding_difference = models.DecimalField(**AMOUNT, default=0)
    base_fee = models.DecimalField(**AMOUNT, default=0)
    minimums = models.DecimalField(**AMOUNT, default=0)  # minimum charges' true-ups
    credits_applied = models.DecimalField(**AMOUNT, default=0)
    wallet_paid = models.DecimalField(**AMOUNT, default=0)
    refunds = models.DecimalField(**AMOUNT, default=0)
    adjustments = models.DecimalField(**AMOUNT, default=0)
    total_due = models.DecimalField(**AMOUNT, default=0)
    mismatch = models.JSONField(default=dict, blank=True)
    # The close's steps, each stamped once it is done (a rerun resumes after the last).
    frozen_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    # How the total due reached Stripe: the meters (already reported), one invoice item,
    # or nothing (no Stripe customer, or nothing to invoice).
    push_method = models.CharField(max_length=16, blank=True, default="")
    stripe_invoice_item_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start", "organization"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "period_start"], name="statement_once_per_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.period_start:%Y-%m-%d} ({self.status})"


class StatementLine(AppendOnlyModel):
    """One line of a statement: usage of a product's dimension, or the base fee, credits,
    wallet, refunds, an adjustment for late usage of a closed period."""

    class Kind(models.TextChoices):
        USAGE = "usage", "Usage"
        BASE_FEE = "base_fee", "Base fee"
        MINIMUM = "minimum", "Minimum charge true-up"
        VOLUME_CREDIT = "volume_credit", "Volume discount (the period's tier for every unit)"
        CREDITS = "credits", "Credits applied"
        WALLET = "wallet", "Paid from the wallet"
        REFUND = "refund", "Refunds"
        ADJUSTMENT = "adjustment", "Adjustment (late usage of a closed period)"
        CREDIT_NOTE = "credit_note", "Credit note (refund of a closed period's charge)"

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    dimension = models.CharField(max_length=64, blank=True, default="")
    description = models.CharField(max_length=255)
    quantity = models.DecimalField(**QUANTITY, default=0)
    included_quantity = models.DecimalField(**QUANTITY, default=0)
    billable_quantity = models.DecimalField(**QUANTITY, default=0)
    unit_price = models.DecimalField(**AMOUNT, default=0)
    amount_unrounded = models.DecimalField(**AMOUNT, default=0)
    amount = models.DecimalField(**AMOUNT, default=0)

    class Meta:
        ordering = ["statement", "position"]
        constraints = [
            models.UniqueConstraint(fields=["statement", "position"], name="statement_line_once"),
        ]

    def __str__(self) -> str:
        return f"{self.statement_id}#{self.position} {self.description}"

    @classmethod
    def discard_stopped_build(cls, statement_id: int) -> int:
        """The one removal of lines: those of a build whose cross-check failed, before a
        re-run builds them again. Such lines were never final, pushed or sent; the
        statement's ``mismatch`` keeps what was found. Any other statement: nothing."""
        stopped = Statement.objects.filter(
            pk=statement_id, status=Statement.Status.MISMATCH, pushed_at__isnull=True
        )
        if not stopped.exists():
            return 0
        deleted, _ = models.QuerySet.delete(cls.objects.filter(statement_id=statement_id))
        return deleted


# A meter reads ``data`` with simple dot paths: ``$.input_tokens``, ``$.usage.output``.
DATA_PATH = re.compile(r"^\$(\.[A-Za-z0-9_-]+)+$")
GROUP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# The key of ``usage_details`` that keeps the CloudEvent's own type, source and data.
CLOUDEVENT_DETAILS = "cloudevent"
MAX_GROUP_KEYS = 10


def path_keys(path: str) -> list[str]:
    """The keys a valid ``$.a.b`` path walks through ``data``: ``["a", "b"]``."""
    return path.split(".")[1:]


class Meter(models.Model):
    """How events of one CloudEvents ``type`` become usage of one product (OpenMeter's
    meter): which paths of ``data`` hold the quantity of each of the product's dimensions,
    and which hold the values usage is grouped by. A meter's events are priced, paid and
    counted against budgets as that product's usage, exactly like ``usage/record``."""

    class Aggregation(models.TextChoices):
        SUM = "SUM", "Sum of the value properties"
        COUNT = "COUNT", "Count of events (each one unit)"

    slug = models.SlugField(max_length=64, unique=True, help_text="The meter's id in the API.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    event_type = models.CharField(
        max_length=200, unique=True, help_text="The CloudEvents `type` this meter reads."
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="meters")
    value_properties = models.JSONField(
        default=dict,
        blank=True,
        help_text='Product dimension -> path into data, e.g. {"input_tokens": '
        '"$.input_tokens", "output_tokens": "$.output_tokens"} or {"units": "$.duration_ms"}. '
        "Empty for COUNT (each event is one unit of the product's first dimension).",
    )
    group_by = models.JSONField(
        default=dict,
        blank=True,
        help_text='Name -> path into data, e.g. {"agent_id": "$.agent_id", "model": "$.model"}. '
        "`user_id` and `session_id` also fill the usage event's own fields.",
    )
    aggregation = models.CharField(
        max_length=8, choices=Aggregation.choices, default=Aggregation.SUM
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed what, when: the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(aggregation__in=["SUM", "COUNT"]), name="meter_aggregation_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def dimensions(self) -> list[str]:
        """The product dimensions its events carry, in the product's order."""
        if self.aggregation == self.Aggregation.COUNT:
            return [self.product.default_dimension]
        return [d for d in self.product.dimensions if d in self.value_properties]

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        values, groups = self.value_properties, self.group_by
        if not isinstance(values, dict) or not all(
            isinstance(path, str) for path in values.values()
        ):
            errors["value_properties"] = ["An object of dimension -> path."]
        elif self.aggregation == self.Aggregation.COUNT and values:
            errors["value_properties"] = ["A COUNT meter reads no values: leave it empty."]
        elif self.aggregation == self.Aggregation.SUM:
            if not values:
                errors["value_properties"] = ["A SUM meter reads at least one value."]
            elif self.product_id is not None:
                unknown = sorted(set(values) - set(self.product.dimensions))
                if unknown:
                    errors["value_properties"] = [
                        f"Not dimensions of {self.product.code}: {', '.join(unknown)} "
                        f"(it has {', '.join(self.product.dimensions)})."
                    ]
            bad = [path for path in values.values() if not DATA_PATH.match(path)]
            if bad:
                errors.setdefault("value_properties", []).append(_path_message(bad))
        if not isinstance(groups, dict) or not all(
            isinstance(path, str) for path in groups.values()
        ):
            errors["group_by"] = ["An object of name -> path."]
        else:
            problems = []
            names = [name for name in groups if not GROUP_KEY.match(name)]
            if names:
                problems.append(
                    f"Names are letters, digits and _ (not starting with a digit): "
                    f"{', '.join(names)}."
                )
            if CLOUDEVENT_DETAILS in groups:
                problems.append(f"`{CLOUDEVENT_DETAILS}` is reserved.")
            if len(groups) > MAX_GROUP_KEYS:
                problems.append(f"At most {MAX_GROUP_KEYS} group-by values.")
            bad = [path for path in groups.values() if not DATA_PATH.match(path)]
            if bad:
                problems.append(_path_message(bad))
            if problems:
                errors["group_by"] = problems
        if errors:
            raise ValidationError(errors)


def _path_message(paths: list[str]) -> str:
    return f"Paths are simple dot paths like $.input_tokens or $.usage.output: {', '.join(paths)}."
