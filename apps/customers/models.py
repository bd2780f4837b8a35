"""Organisations (the tenants and billing accounts), their members and their API keys."""

from __future__ import annotations

import hashlib
import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from apps.core.audit import history_user
from apps.core.ledger import AppendOnlyModel
from apps.pricing.currencies import CURRENCY_CHOICES


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone.")


class SubscriptionStatus(models.TextChoices):
    """Stripe's subscription statuses."""

    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    UNPAID = "unpaid", "Unpaid"
    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete (expired)"
    PAUSED = "paused", "Paused"


class Organization(models.Model):
    """The tenant and the billing account; dj-stripe's subscriber model."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=200)
    # The organisation's id in the API (``organization_id``): lower-case, stable.
    slug = models.SlugField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Lower-case letters, digits, dashes.")],
    )
    billing_email = models.EmailField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, default="USD")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # None: the default plan (pricing.Plan.is_default).
    plan = models.ForeignKey(
        "pricing.Plan",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="organizations",
    )
    # Where the organisation stands with Stripe, followed from its subscription (webhooks
    # and the daily reconciliation); blank while it has none.
    subscription_status = models.CharField(
        max_length=24, choices=SubscriptionStatus.choices, blank=True, default=""
    )
    past_due_since = models.DateTimeField(null=True, blank=True)
    # The billing cycle anchor of its live subscription: its monthly periods (statements,
    # plan inclusions, period pricing) start there each month; blank: calendar months in
    # its time zone.
    billing_anchor = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        permissions = [
            ("suspend_organization", "Can suspend and reactivate organisations"),
            ("sync_organization", "Can re-sync organisations from Stripe"),
        ]
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "suspended"]), name="organization_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def email(self) -> str:
        # dj-stripe reads the subscriber's ``email`` for the Stripe customer.
        return self.billing_email

    def get_full_name(self) -> str:
        # ... and ``get_full_name()`` for its name.
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def period_bounds(self, instant: datetime, period: str = "month") -> tuple[datetime, datetime]:
        """[start, end) of its ``period`` holding ``instant``: months follow its billing
        anchor when it has one, else the calendar in its time zone."""
        from apps.pricing.periods import period_bounds

        return period_bounds(instant, period, self.tz, anchor=self.billing_anchor)

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def charges_blocked(self, at: datetime) -> bool:
        """Past due beyond the grace period (``STRIPE_PAST_DUE_GRACE_DAYS``): no usage may
        be charged to the invoice until Stripe reports the subscription paid."""
        return (
            self.subscription_status == SubscriptionStatus.PAST_DUE
            and self.past_due_since is not None
            and at - self.past_due_since >= timedelta(days=settings.STRIPE_PAST_DUE_GRACE_DAYS)
        )

    def clean(self) -> None:
        # Usage is priced in the plan's currency and paid from a wallet, credits and
        # budgets in the organisation's: they must be one currency.
        if self.plan is not None and self.plan.currency != self.currency:
            raise ValidationError(
                {"plan": f"{self.plan.code} is priced in {self.plan.currency}; this "
                 f"organisation pays in {self.currency}."}
            )  # fmt: skip


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        BILLING = "billing", "Billing"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.organization} ({self.role})"


class ApiKey(models.Model):
    """A credential for the API. Only the SHA-256 of the secret is kept.

    An *organisation* key reads its own organisation's data and records its own usage. A
    *service* key belongs to the platform: it records usage for any organisation named in
    the request and never opens customer pages or the admin.
    """

    class Kind(models.TextChoices):
        ORGANIZATION = "organization", "Organisation key"
        SERVICE = "service", "Service key"

    class Scope(models.TextChoices):
        USAGE_WRITE = "usage:write", "Record usage"
        BILLING_READ = "billing:read", "Read billing data"
        BILLING_WRITE = "billing:write", "Process billing and refunds"
        BUDGETS_WRITE = "budgets:write", "Manage budgets"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys", null=True, blank=True
    )
    name = models.CharField(max_length=100)
    # Public, unique part of the key, shown in lists (e.g. ``bp_org_Xk3f9QaZ``).
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="organization", organization__isnull=False)
                    | Q(kind="service", organization__isnull=True)
                ),
                name="api_key_kind_matches_organization",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_service(self) -> bool:
        return self.kind == self.Kind.SERVICE

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    # Key format: ``bp_<org|svc>_<8 public chars>_<40 secret chars>``, all base62, so the
    # prefix can be shown and looked up while only a hash of the whole key is stored.
    KEY_TAGS = {Kind.ORGANIZATION: "org", Kind.SERVICE: "svc"}

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @staticmethod
    def prefix_of(raw_key: str) -> str | None:
        """The public prefix of a well-formed key, or None for anything else."""
        parts = raw_key.split("_")
        if len(parts) != 4 or parts[0] != "bp" or parts[1] not in ("org", "svc"):
            return None
        if len(parts[2]) != 8 or len(parts[3]) != 40:
            return None
        return "_".join(parts[:3])


# --- wallets and credits ----------------------------------------------------------------
# Balances are kept on the Wallet and CreditGrant rows (so a deduction is one conditional
# UPDATE under a row lock) and always equal the sum of their append-only ledger entries,
# written in the same transaction; the books check proves it.

BALANCE = {"max_digits": 28, "decimal_places": 12}


class Wallet(models.Model):
    """The organisation's prepaid balance."""

    organization = models.OneToOneField(
        Organization, on_delete=models.PROTECT, related_name="wallet"
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    balance = models.DecimalField(**BALANCE, default=0)
    # How far below zero usage may take the balance (0: never negative).
    overdraft_limit = models.DecimalField(**BALANCE, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [
            ("top_up_wallet", "Can top up wallets by hand"),
            ("grant_credits", "Can grant credits"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=-models.F("overdraft_limit")),
                name="wallet_within_overdraft",
            ),
            models.CheckConstraint(
                condition=Q(overdraft_limit__gte=0), name="wallet_overdraft_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.organization}"

    def can_pay(self, amount: Decimal) -> bool:
        """Whether ``amount`` can be taken without going below the overdraft limit."""
        return self.balance - amount >= -self.overdraft_limit


class WalletEntry(AppendOnlyModel):
    class Kind(models.TextChoices):
        TOP_UP = "top_up", "Top-up"
        DEDUCTION = "deduction", "Usage deduction"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(**BALANCE)  # positive credits the wallet, negative debits it
    kind = models.CharField(max_length=16, choices=Kind.choices)
    balance_after = models.DecimalField(**BALANCE)
    # What caused it (a billing id, a Checkout session); unique per wallet and kind, so a
    # retried top-up or refund is written once.
    reference = models.CharField(max_length=255, blank=True, default="")
    actor = models.CharField(max_length=255, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "wallet entries"
        indexes = [models.Index(fields=["wallet", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "kind", "reference"],
                condition=~Q(reference=""),
                name="wallet_entry_reference_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class CreditGrant(models.Model):
    """Promotional credits; consumed earliest expiry first."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="credit_grants"
    )
    amount = models.DecimalField(**BALANCE)
    remaining = models.DecimalField(**BALANCE)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    expires_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField()
    reference = models.CharField(max_length=255, blank=True, default="")
    granted_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # Who changed what, when (staff, pages, Stripe): the admin's history view.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = [models.F("expires_at").asc(nulls_last=True), "id"]
        indexes = [models.Index(fields=["organization", "expires_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")),
                name="credit_grant_remaining_in_range",
            ),
            models.UniqueConstraint(
                fields=["organization", "reference"],
                condition=~Q(reference=""),
                name="credit_grant_reference_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} credits ({self.reason})"

    def is_usable_at(self, instant) -> bool:
        return self.remaining > 0 and (self.expires_at is None or instant < self.expires_at)


class CreditEntry(AppendOnlyModel):
    class Kind(models.TextChoices):
        GRANT = "grant", "Granted"
        CONSUMPTION = "consumption", "Consumed by usage"
        REFUND = "refund", "Refunded"
        EXPIRY = "expiry", "Expired"

    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(**BALANCE)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reference = models.CharField(max_length=255, blank=True, default="")
    actor = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["grant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"
