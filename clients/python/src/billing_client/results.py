"""What the usage, pricing, quota and budget endpoints answer, as typed values.

Amounts and quantities are ``Decimal``; instants are aware ``datetime``; each result keeps
the JSON it was read from in ``raw`` (for fields a newer portal may add).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing_client.errors import BillingError, error_from_payload
from billing_client.parsing import decimal, instant, optional_decimal

Raw = Mapping[str, Any]


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class BreakdownLine:
    """What one dimension of a usage cost: quantity, what the plan included or gave free,
    what was billed, at which unit price."""

    dimension: str
    quantity: Decimal
    included_quantity: Decimal
    free_quantity: Decimal
    billable_quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    pricing_model: str
    price_rule_id: int | None

    @classmethod
    def from_json(cls, data: Raw) -> BreakdownLine:
        return cls(
            dimension=data["dimension"],
            quantity=decimal(data["quantity"]),
            included_quantity=decimal(data["included_quantity"]),
            free_quantity=decimal(data["free_quantity"]),
            billable_quantity=decimal(data["billable_quantity"]),
            unit_price=decimal(data["unit_price"]),
            amount=decimal(data["amount"]),
            pricing_model=data["pricing_model"],
            price_rule_id=data.get("price_rule_id"),
        )


@dataclass(frozen=True)
class BillingRecord:
    """One priced usage event and how it is paid."""

    billing_id: str
    event_id: str
    organization_id: str
    user_id: str
    product_id: str
    service_type: str
    usage_amount: Decimal
    included_quantity: Decimal
    unit_price: Decimal
    total_amount: Decimal
    currency: str
    billing_method: str
    billing_status: str
    breakdown: list[BreakdownLine]
    occurred_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> BillingRecord:
        return cls(**_record_fields(data), raw=data)


def _record_fields(data: Raw) -> dict[str, Any]:
    return {
        "billing_id": data["billing_id"],
        "event_id": data["event_id"],
        "organization_id": data["organization_id"],
        "user_id": data.get("user_id") or "",
        "product_id": data["product_id"],
        "service_type": data["service_type"],
        "usage_amount": decimal(data["usage_amount"]),
        "included_quantity": decimal(data["included_quantity"]),
        "unit_price": decimal(data["unit_price"]),
        "total_amount": decimal(data["total_amount"]),
        "currency": data["currency"],
        "billing_method": data["billing_method"],
        "billing_status": data["billing_status"],
        "breakdown": [BreakdownLine.from_json(line) for line in data.get("breakdown") or []],
        "occurred_at": instant(data.get("occurred_at")),
        "created_at": instant(data.get("created_at")),
        "updated_at": instant(data.get("updated_at")),
    }


@dataclass(frozen=True)
class BudgetStanding:
    """A budget an event counted against, as it stands after the event."""

    budget_id: int
    name: str
    hard: bool
    limit: Decimal
    spent: Decimal
    remaining: Decimal

    @classmethod
    def from_json(cls, data: Raw) -> BudgetStanding:
        return cls(
            budget_id=data["budget_id"],
            name=data["name"],
            hard=bool(data["hard"]),
            limit=decimal(data["limit"]),
            spent=decimal(data["spent"]),
            remaining=decimal(data["remaining"]),
        )


@dataclass(frozen=True)
class RecordedUsage(BillingRecord):
    """The answer to recording one event: its billing record, whether the portal had it
    already (``duplicate``: an earlier attempt with the same key was recorded, nothing was
    charged again), the balances left and the budgets it counted against."""

    duplicate: bool = False
    total_cost: Decimal = Decimal(0)
    wallet_balance: Decimal = Decimal(0)
    credit_balance: Decimal = Decimal(0)
    budgets: list[BudgetStanding] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Raw) -> RecordedUsage:
        return cls(
            **_record_fields(data),
            raw=data,
            duplicate=bool(data.get("duplicate")),
            total_cost=decimal(data["total_cost"]),
            wallet_balance=decimal(data["wallet_balance"]),
            credit_balance=decimal(data["credit_balance"]),
            budgets=[BudgetStanding.from_json(b) for b in data.get("budgets") or []],
        )


@dataclass(frozen=True)
class BatchItem:
    """The answer for one event of a batch: ``accepted``, ``duplicate`` or ``rejected``
    (with ``error``, the typed refusal)."""

    index: int
    status: str
    event_id: str | None
    billing_id: str | None = None
    total_cost: Decimal | None = None
    billing_method: str | None = None
    billing_status: str | None = None
    error: BillingError | None = field(default=None, compare=False)

    @property
    def recorded(self) -> bool:
        """Accepted now or earlier: the portal holds this event exactly once."""
        return self.status in ("accepted", "duplicate")

    @classmethod
    def from_json(cls, data: Raw) -> BatchItem:
        error = None
        if data.get("error") is not None:
            error = error_from_payload({"error": data["error"]}, _status_of(data["error"]))
        return cls(
            index=data["index"],
            status=data["status"],
            event_id=data.get("event_id"),
            billing_id=data.get("billing_id"),
            total_cost=optional_decimal(data.get("total_cost")),
            billing_method=data.get("billing_method"),
            billing_status=data.get("billing_status"),
            error=error,
        )


# The HTTP status each refusal has when it answers a single event (batch items carry
# only the code); used to type the error and to tell permanent refusals from the rest.
_ITEM_STATUSES = {
    "budget_exceeded": 402,
    "not_included_in_subscription": 402,
    "insufficient_wallet_balance": 402,
    "insufficient_credits": 402,
    "subscription_past_due": 402,
    "idempotency_conflict": 409,
    "product_not_found": 404,
    "organization_not_found": 404,
    "organization_suspended": 403,
    "price_not_configured": 422,
}


def _status_of(error: Raw) -> int:
    return _ITEM_STATUSES.get(str(error.get("code")), 400)


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    duplicates: int
    rejected: int
    results: list[BatchItem]
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> BatchResult:
        return cls(
            accepted=data["accepted"],
            duplicates=data["duplicates"],
            rejected=data["rejected"],
            results=[BatchItem.from_json(item) for item in data["results"]],
            raw=data,
        )


@dataclass(frozen=True)
class Inclusion:
    """What a plan includes per period, for a product or a service type."""

    quantity: Decimal
    period: str
    scope: str

    @classmethod
    def from_json(cls, data: Raw | None) -> Inclusion | None:
        if data is None:
            return None
        return cls(quantity=decimal(data["quantity"]), period=data["period"], scope=data["scope"])


@dataclass(frozen=True)
class Breakdown:
    plan: str | None
    priced_at: datetime | None
    included: Inclusion | None
    dimensions: list[BreakdownLine]

    @classmethod
    def from_json(cls, data: Raw) -> Breakdown:
        return cls(
            plan=data.get("plan"),
            priced_at=instant(data.get("priced_at")),
            included=Inclusion.from_json(data.get("included")),
            dimensions=[BreakdownLine.from_json(line) for line in data.get("dimensions") or []],
        )


@dataclass(frozen=True)
class CostQuote:
    """What usage would cost now, without recording it (``billing/calculate``)."""

    product_id: str
    usage_amount: Decimal
    unit_price: Decimal
    total_cost: Decimal
    currency: str
    is_free_tier: bool
    is_included_in_subscription: bool
    suggested_billing_method: str
    available_billing_methods: list[str]
    breakdown: Breakdown
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> CostQuote:
        return cls(
            product_id=data["product_id"],
            usage_amount=decimal(data["usage_amount"]),
            unit_price=decimal(data["unit_price"]),
            total_cost=decimal(data["total_cost"]),
            currency=data["currency"],
            is_free_tier=bool(data["is_free_tier"]),
            is_included_in_subscription=bool(data["is_included_in_subscription"]),
            suggested_billing_method=data["suggested_billing_method"],
            available_billing_methods=list(data.get("available_billing_methods") or []),
            breakdown=Breakdown.from_json(data["breakdown"]),
            raw=data,
        )


@dataclass(frozen=True)
class CostEstimate:
    """What a planned call would cost from its token (or dimension) counts."""

    product_id: str
    currency: str
    total_cost: Decimal
    breakdown: Breakdown
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> CostEstimate:
        return cls(
            product_id=data["product_id"],
            currency=data["currency"],
            total_cost=decimal(data["total_cost"]),
            breakdown=Breakdown.from_json(data["breakdown"]),
            raw=data,
        )


@dataclass(frozen=True)
class QuotaCheck:
    """How much of the plan's inclusion is left this period. A read: it reserves nothing
    (``check_and_record`` is the atomic step)."""

    allowed: bool
    has_quota: bool
    requested_amount: Decimal
    quota_limit: Decimal | None
    used: Decimal | None
    remaining: Decimal | None
    scope: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    reason: str | None = None
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> QuotaCheck:
        return cls(
            allowed=bool(data["allowed"]),
            has_quota=bool(data["has_quota"]),
            requested_amount=decimal(data["requested_amount"]),
            quota_limit=optional_decimal(data.get("quota_limit")),
            used=optional_decimal(data.get("used")),
            remaining=optional_decimal(data.get("remaining")),
            scope=data.get("scope"),
            period_start=instant(data.get("period_start")),
            period_end=instant(data.get("period_end")),
            reason=data.get("reason"),
            raw=data,
        )


@dataclass(frozen=True)
class PeriodStatus:
    """Where a budget's current period stands."""

    period_start: datetime | None
    period_end: datetime | None
    spent: Decimal
    remaining: Decimal
    utilization_percent: Decimal
    crossed_thresholds: list[int]

    @classmethod
    def from_json(cls, data: Raw) -> PeriodStatus:
        return cls(**_period_fields(data))


def _period_fields(data: Raw) -> dict[str, Any]:
    return {
        "period_start": instant(data.get("period_start")),
        "period_end": instant(data.get("period_end")),
        "spent": decimal(data["spent"]),
        "remaining": decimal(data["remaining"]),
        "utilization_percent": decimal(data["utilization_percent"]),
        "crossed_thresholds": list(data.get("crossed_thresholds") or []),
    }


@dataclass(frozen=True)
class BudgetStatus(PeriodStatus):
    """A budget with its current period; ``fits`` (budget checks only) says whether the
    usage asked about would fit it."""

    budget_id: int = 0
    name: str = ""
    hard: bool = True
    limit: Decimal = Decimal(0)
    fits: bool | None = None

    @classmethod
    def from_json(cls, data: Raw) -> BudgetStatus:
        return cls(
            **_period_fields(data),
            budget_id=data["budget_id"],
            name=data["name"],
            hard=bool(data["hard"]),
            limit=decimal(data["limit"]),
            fits=data.get("fits"),
        )


@dataclass(frozen=True)
class BudgetCheck:
    """Would this usage fit every budget that covers it? Reserves nothing."""

    allowed: bool
    estimated_cost: Decimal
    currency: str
    budgets: list[BudgetStatus]
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> BudgetCheck:
        return cls(
            allowed=bool(data["allowed"]),
            estimated_cost=decimal(data["estimated_cost"]),
            currency=data["currency"],
            budgets=[BudgetStatus.from_json(b) for b in data.get("budgets") or []],
            raw=data,
        )


@dataclass(frozen=True)
class BudgetViolations:
    """Budgets at or over their limit, and those past a warning threshold."""

    violations: list[BudgetStatus]
    warnings: list[BudgetStatus]

    @classmethod
    def from_json(cls, data: Raw) -> BudgetViolations:
        return cls(
            violations=[BudgetStatus.from_json(b) for b in data.get("violations") or []],
            warnings=[BudgetStatus.from_json(b) for b in data.get("warnings") or []],
        )


@dataclass(frozen=True)
class Budget:
    """A budget of the organisation, with its current period."""

    id: int
    name: str
    scope: str
    period: str
    limit: Decimal
    currency: str
    is_hard: bool
    thresholds: list[int]
    is_active: bool
    service_type: str | None = None
    product_id: str | None = None
    api_key: str | None = None
    created_at: datetime | None = None
    current_period: PeriodStatus | None = None
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> Budget:
        current = data.get("current_period")
        return cls(
            id=data["id"],
            name=data["name"],
            scope=data["scope"],
            period=data["period"],
            limit=decimal(data["limit"]),
            currency=data["currency"],
            is_hard=bool(data["is_hard"]),
            thresholds=list(data.get("thresholds") or []),
            is_active=bool(data["is_active"]),
            service_type=data.get("service_type"),
            product_id=data.get("product_id"),
            api_key=data.get("api_key"),
            created_at=instant(data.get("created_at")),
            current_period=PeriodStatus.from_json(current) if current else None,
            raw=data,
        )
