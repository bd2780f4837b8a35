"""What the reading endpoints answer: stats, usage totals, records pages, the wallet,
statements, the price sheet, the caller and its organisation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from billing_client.parsing import day, decimal, decimals, instant, optional_decimal
from billing_client.results import BillingRecord, Inclusion

Raw = Mapping[str, Any]


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Stats:
    """Billing statistics for a date range (by default the last 30 days)."""

    total_billing_records: int
    pending_billing_records: int
    completed_billing_records: int
    failed_billing_records: int
    total_revenue: Decimal
    revenue_by_service: dict[str, Decimal]
    revenue_by_method: dict[str, Decimal]
    active_users: int
    active_organizations: int
    stats_period_start: date | None
    stats_period_end: date | None
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> Stats:
        return cls(
            total_billing_records=data["total_billing_records"],
            pending_billing_records=data["pending_billing_records"],
            completed_billing_records=data["completed_billing_records"],
            failed_billing_records=data["failed_billing_records"],
            total_revenue=decimal(data["total_revenue"]),
            revenue_by_service=decimals(data.get("revenue_by_service")),
            revenue_by_method=decimals(data.get("revenue_by_method")),
            active_users=data["active_users"],
            active_organizations=data["active_organizations"],
            stats_period_start=day(data.get("stats_period_start")),
            stats_period_end=day(data.get("stats_period_end")),
            raw=data,
        )


@dataclass(frozen=True)
class UsageTotals:
    """Quantity, cost and event count of one group (``group`` holds what it is grouped
    by: service_type, product, user, day, billing_method, consumer)."""

    quantity: Decimal
    cost: Decimal
    events: int
    group: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Raw) -> UsageTotals:
        group = {k: v for k, v in data.items() if k not in ("quantity", "cost", "events")}
        if "day" in group:
            group["day"] = day(group["day"])
        return cls(
            quantity=decimal(data["quantity"]),
            cost=decimal(data["cost"]),
            events=int(data["events"]),
            group=group,
        )

    @property
    def day(self) -> date | None:
        return self.group.get("day")


@dataclass(frozen=True)
class Aggregations:
    organization_id: str | None
    start_date: date | None
    end_date: date | None
    group_by: list[str]
    results: list[UsageTotals]

    @classmethod
    def from_json(cls, data: Raw) -> Aggregations:
        return cls(
            organization_id=data.get("organization_id"),
            start_date=day(data.get("start_date")),
            end_date=day(data.get("end_date")),
            group_by=list(data.get("group_by") or []),
            results=[UsageTotals.from_json(row) for row in data.get("results") or []],
        )


@dataclass(frozen=True)
class Trends:
    days: int
    points: list[UsageTotals]

    @classmethod
    def from_json(cls, data: Raw) -> Trends:
        return cls(days=data["days"], points=[UsageTotals.from_json(p) for p in data["points"]])


@dataclass(frozen=True)
class TopConsumers:
    consumers: str  # "users" (within an organisation) or "organizations" (platform-wide)
    results: list[UsageTotals]

    @classmethod
    def from_json(cls, data: Raw) -> TopConsumers:
        return cls(
            consumers=data["consumers"],
            results=[UsageTotals.from_json(row) for row in data.get("results") or []],
        )


def cursor_of(url: str | None) -> str | None:
    """The ``cursor`` parameter of a page link."""
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("cursor")
    return values[0] if values else None


@dataclass(frozen=True)
class RecordPage:
    """One page of billing records, newest first; ``next_cursor`` fetches the next."""

    records: list[BillingRecord]
    next_cursor: str | None
    previous_cursor: str | None

    @classmethod
    def from_json(cls, data: Raw) -> RecordPage:
        return cls(
            records=[BillingRecord.from_json(r) for r in data.get("results") or []],
            next_cursor=cursor_of(data.get("next")),
            previous_cursor=cursor_of(data.get("previous")),
        )


@dataclass(frozen=True)
class UserRecords:
    """One page of an end user's billing records, newest first."""

    user_id: str
    limit: int
    offset: int
    has_more: bool
    records: list[BillingRecord]

    @classmethod
    def from_json(cls, data: Raw) -> UserRecords:
        return cls(
            user_id=data["user_id"],
            limit=data["limit"],
            offset=data["offset"],
            has_more=bool(data["has_more"]),
            records=[BillingRecord.from_json(r) for r in data.get("records") or []],
        )


@dataclass(frozen=True)
class CreditGrant:
    amount: Decimal
    remaining: Decimal
    expires_at: datetime | None
    reason: str
    usable: bool


@dataclass(frozen=True)
class Wallet:
    organization_id: str
    currency: str
    wallet_balance: Decimal
    credit_balance: Decimal
    credit_grants: list[CreditGrant]

    @classmethod
    def from_json(cls, data: Raw) -> Wallet:
        return cls(
            organization_id=data["organization_id"],
            currency=data["currency"],
            wallet_balance=decimal(data["wallet_balance"]),
            credit_balance=decimal(data["credit_balance"]),
            credit_grants=[
                CreditGrant(
                    amount=decimal(g["amount"]),
                    remaining=decimal(g["remaining"]),
                    expires_at=instant(g.get("expires_at")),
                    reason=g.get("reason") or "",
                    usable=bool(g.get("usable")),
                )
                for g in data.get("credit_grants") or []
            ],
        )


@dataclass(frozen=True)
class StatementLine:
    position: int
    kind: str
    description: str
    product_id: str | None
    dimension: str
    quantity: Decimal
    included_quantity: Decimal
    billable_quantity: Decimal
    unit_price: Decimal
    amount_unrounded: Decimal
    amount: Decimal

    @classmethod
    def from_json(cls, data: Raw) -> StatementLine:
        return cls(
            position=data["position"],
            kind=data["kind"],
            description=data["description"],
            product_id=data.get("product_id"),
            dimension=data.get("dimension") or "",
            **{
                name: decimal(data[name])
                for name in (
                    "quantity",
                    "included_quantity",
                    "billable_quantity",
                    "unit_price",
                    "amount_unrounded",
                    "amount",
                )
            },  # fmt: skip
        )


STATEMENT_AMOUNTS = (
    "usage_total", "unrounded_usage", "rounding_difference", "base_fee", "minimums",
    "credits_applied", "wallet_paid", "refunds", "adjustments", "total_due",
)  # fmt: skip


@dataclass(frozen=True)
class Statement:
    """A final monthly statement; ``lines`` only when read one by one."""

    id: int
    organization_id: str
    period_start: datetime | None
    period_end: datetime | None
    currency: str
    status: str
    plan: str | None
    amounts: dict[str, Decimal]
    finalized_at: datetime | None
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def total_due(self) -> Decimal:
        return self.amounts["total_due"]

    @classmethod
    def from_json(cls, data: Raw) -> Statement:
        return cls(
            id=data["id"],
            organization_id=data["organization_id"],
            period_start=instant(data.get("period_start")),
            period_end=instant(data.get("period_end")),
            currency=data["currency"],
            status=data["status"],
            plan=data.get("plan"),
            amounts={name: decimal(data[name]) for name in STATEMENT_AMOUNTS if name in data},
            finalized_at=instant(data.get("finalized_at")),
            lines=[StatementLine.from_json(line) for line in data.get("lines") or []],
        )


@dataclass(frozen=True)
class StatementPage:
    statements: list[Statement]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Raw) -> StatementPage:
        return cls(
            statements=[Statement.from_json(s) for s in data.get("results") or []],
            next_cursor=cursor_of(data.get("next")),
        )


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal


@dataclass(frozen=True)
class DimensionPrice:
    """The price of one dimension on the caller's plan (``configured`` False: no price)."""

    dimension: str
    configured: bool
    source: str | None
    pricing_model: str | None
    unit_price: Decimal | None
    tiers: list[Tier]
    package_size: Decimal | None
    package_price: Decimal | None
    free_allowance: Decimal | None
    minimum_charge: Decimal | None
    effective_from: datetime | None
    effective_to: datetime | None

    @classmethod
    def from_json(cls, data: Raw) -> DimensionPrice:
        return cls(
            dimension=data["dimension"],
            configured=bool(data["configured"]),
            source=data.get("source"),
            pricing_model=data.get("pricing_model"),
            unit_price=optional_decimal(data.get("unit_price")),
            tiers=[
                Tier(
                    up_to=optional_decimal(t.get("up_to")),
                    unit_price=decimal(t["unit_price"]),
                    flat_fee=decimal(t["flat_fee"]),
                )
                for t in data.get("tiers") or []
            ],
            package_size=optional_decimal(data.get("package_size")),
            package_price=optional_decimal(data.get("package_price")),
            free_allowance=optional_decimal(data.get("free_allowance")),
            minimum_charge=optional_decimal(data.get("minimum_charge")),
            effective_from=instant(data.get("effective_from")),
            effective_to=instant(data.get("effective_to")),
        )


@dataclass(frozen=True)
class ProductPrice:
    """A product and its prices on the caller's plan."""

    product_id: str
    name: str
    service_type: str
    unit: str
    provider: str
    model_name: str
    currency: str
    included: Inclusion | None
    prices: list[DimensionPrice]

    @classmethod
    def from_json(cls, data: Raw) -> ProductPrice:
        return cls(
            product_id=data["product_id"],
            name=data["name"],
            service_type=data["service_type"],
            unit=data["unit"],
            provider=data.get("provider") or "",
            model_name=data.get("model_name") or "",
            currency=data["currency"],
            included=Inclusion.from_json(data.get("included")),
            prices=[DimensionPrice.from_json(p) for p in data.get("prices") or []],
        )


@dataclass(frozen=True)
class PriceSheet:
    plan: str | None
    currency: str
    products: list[ProductPrice]

    @classmethod
    def from_json(cls, data: Raw) -> PriceSheet:
        return cls(
            plan=data.get("plan"),
            currency=data["currency"],
            products=[ProductPrice.from_json(p) for p in data.get("products") or []],
        )


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str
    billing_email: str
    currency: str
    time_zone: str
    status: str
    created_at: datetime | None

    @classmethod
    def from_json(cls, data: Raw) -> Organization:
        return cls(
            organization_id=data["organization_id"],
            name=data["name"],
            billing_email=data.get("billing_email") or "",
            currency=data["currency"],
            time_zone=data["time_zone"],
            status=data["status"],
            created_at=instant(data.get("created_at")),
        )


@dataclass(frozen=True)
class Info:
    """The service and the caller: the key's prefix, kind, organisation and scopes."""

    service: str
    version: str
    api_version: str
    key_prefix: str
    key_kind: str
    organization_id: str | None
    scopes: list[str]
    raw: Raw = _raw()

    @classmethod
    def from_json(cls, data: Raw) -> Info:
        caller = data.get("caller") or {}
        return cls(
            service=data["service"],
            version=data["version"],
            api_version=data["api_version"],
            key_prefix=caller.get("key_prefix", ""),
            key_kind=caller.get("key_kind", ""),
            organization_id=caller.get("organization_id"),
            scopes=list(caller.get("scopes") or []),
            raw=data,
        )
