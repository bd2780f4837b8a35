"""Reads of usage and billing: records, and every aggregate from the daily rollup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from apps.budgets.models import Budget
from apps.customers.models import Organization
from apps.pricing.cost_engine import PricingModel
from apps.pricing.models import BillingMethod
from apps.pricing.periods import MONTH, local_day, midnight
from apps.usage.models import BillingRecord, BillingStatus, DailyUsage, UsageCounter

ZERO = Decimal(0)


def inclusion_counter_key(scope: str) -> str:
    """The usage counter that holds how much of a plan inclusion (``scope``) was used."""
    return f"include:{scope}"


def price_counter_key(product_id: int, dimension: str) -> str:
    """The usage counter of a dimension whose price depends on the period's usage."""
    return f"price:{product_id}:{dimension}"


def price_depends_on_period(terms) -> bool:
    """Tiers, packages and free allowances price an event by what the period used before."""
    return terms.model != PricingModel.PER_UNIT or terms.free_allowance > 0


def period_position(
    *, organization: Organization, sheet, quantities, at: datetime
) -> tuple[dict[str, Decimal], Decimal]:
    """Where the organisation stands at ``at`` for pricing the product of ``sheet``: the
    period-to-date quantity of each dimension whose price depends on it, and how much of
    the plan's inclusion is used. What ingestion would price an event at now (read without
    a lock: a quote, not a charge)."""
    month_start, _ = organization.period_bounds(at, MONTH)
    wanted = {}
    for dimension in quantities:
        version = sheet.rule_at(dimension, at)
        if version is not None and price_depends_on_period(version.terms):
            wanted[dimension] = (price_counter_key(sheet.product_id, dimension), month_start)
    inclusion = None
    if sheet.inclusion is not None:
        start, _ = organization.period_bounds(at, sheet.inclusion.period)
        inclusion = (inclusion_counter_key(sheet.inclusion.scope), start)
    keys = [*wanted.values(), *([inclusion] if inclusion else [])]
    if not keys:
        return {}, ZERO
    found = {
        (key, start): quantity
        for key, start, quantity in UsageCounter.objects.filter(
            organization=organization,
            key__in={key for key, _ in keys},
            period_start__in={start for _, start in keys},
        ).values_list("key", "period_start", "quantity")
    }
    period_to_date = {dimension: found.get(key, ZERO) for dimension, key in wanted.items()}
    return period_to_date, found.get(inclusion, ZERO) if inclusion else ZERO


def inclusion_used(*, organization: Organization, scope: str, period_start) -> Decimal:
    return (
        UsageCounter.objects.filter(
            organization=organization, key=inclusion_counter_key(scope), period_start=period_start
        )
        .values_list("quantity", flat=True)
        .first()
        or ZERO
    )


GROUPS = {
    "service_type": "service_type",
    "product": "product__code",
    "user": "user_id",
    "day": "day",
    "billing_method": "billing_method",
}


def billing_records(
    *,
    organization: Organization | None,
    user_id: str | None = None,
    status: str | None = None,
    service_type: str | None = None,
    product_code: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> QuerySet[BillingRecord]:
    """Records, newest first, filtered; ``end`` is inclusive (a whole day)."""
    queryset = BillingRecord.objects.select_related("event", "product", "organization")
    if organization is not None:
        queryset = queryset.filter(organization=organization)
    if user_id is not None:
        queryset = queryset.filter(user_id=user_id)
    if status:
        queryset = queryset.filter(status=status)
    if service_type:
        queryset = queryset.filter(service_type=service_type)
    if product_code:
        queryset = queryset.filter(product__code=product_code)
    # Ranges on the column itself (not on its date), so the (organisation, created_at)
    # index serves them; days are the organisation's local days, as its rollup's are (UTC
    # days platform-wide).
    tz = organization.tz if organization is not None else UTC
    if start:
        queryset = queryset.filter(created_at__gte=midnight(start, tz))
    if end:
        queryset = queryset.filter(created_at__lt=midnight(end + timedelta(days=1), tz))
    return queryset.order_by("-created_at", "-id")


def daily_usage(
    *,
    organization: Organization | None,
    start: date | None = None,
    end: date | None = None,
    service_type: str | None = None,
    product_code: str | None = None,
    user_id: str | None = None,
) -> QuerySet[DailyUsage]:
    queryset = DailyUsage.objects.all()
    if organization is not None:
        queryset = queryset.filter(organization=organization)
    if start:
        queryset = queryset.filter(day__gte=start)
    if end:
        queryset = queryset.filter(day__lte=end)
    if service_type:
        queryset = queryset.filter(service_type=service_type)
    if product_code:
        queryset = queryset.filter(product__code=product_code)
    if user_id is not None:
        queryset = queryset.filter(user_id=user_id)
    return queryset


def _totals():
    return {
        "quantity": Coalesce(Sum("quantity"), ZERO),
        "cost": Coalesce(Sum("cost"), ZERO),
        "events": Coalesce(Sum("event_count"), 0),
    }


def usage_aggregations(*, group_by: list[str], **filters) -> list[dict]:
    """Totals of quantity, cost and events per group (service type, product, user, day,
    billing method), largest cost first."""
    fields = [GROUPS[name] for name in group_by]
    rows = daily_usage(**filters).values(*fields).annotate(**_totals()).order_by("-cost", *fields)
    inverse = {field: name for name, field in GROUPS.items()}
    return [{inverse.get(key, key): value for key, value in row.items()} for row in rows]


def usage_trend(*, organization: Organization | None, days: int, today: date, **filters):
    """One point per day for the last ``days`` days (zeros where nothing was used)."""
    start = today - timedelta(days=days - 1)
    rows = {
        row["day"]: row
        for row in daily_usage(organization=organization, start=start, end=today, **filters)
        .values("day")
        .annotate(**_totals())
    }
    points = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = rows.get(day, {"quantity": ZERO, "cost": ZERO, "events": 0})
        points.append(
            {"day": day, "quantity": row["quantity"], "cost": row["cost"], "events": row["events"]}
        )
    return points


RATE_DAYS = 7  # a forecast extrapolates the average of the last week's full days


@dataclass(frozen=True)
class SpendForecast:
    """Spend at a period's end if the recent daily rate goes on: ``amount``. The rate is
    the average of the full days ``basis_start`` to ``basis_end`` (``days`` of them, at most
    ``RATE_DAYS``, whatever period they fall in), or today's spend so far when the
    organisation has no full day of usage yet (``days`` 0)."""

    amount: Decimal
    daily_rate: Decimal
    days: int
    basis_start: date | None
    basis_end: date | None


def forecast(spent: Decimal, recent: list[Decimal], days_left: int) -> Decimal:
    """``spent`` plus the average of ``recent`` (at most the last ``RATE_DAYS``) for each
    of the ``days_left`` whole days after today."""
    recent = recent[-RATE_DAYS:]
    if not recent or days_left <= 0:
        return spent
    return spent + sum(recent, ZERO) / len(recent) * days_left


def spend_forecast(
    *, organization: Organization, today: date, spent: Decimal, today_spent: Decimal,
    days_left: int,
) -> SpendForecast:  # fmt: skip
    """The forecast of the period's spend from the last ``RATE_DAYS`` full days before
    ``today`` (local days of the organisation), not only those of this period: on the
    second of a month it still rests on a week. Days before the organisation's first
    usage are not averaged in."""
    first = daily_usage(organization=organization).order_by("day").values_list("day", flat=True)
    first_day = first.first()
    full_days = 0 if first_day is None else min(RATE_DAYS, (today - first_day).days)
    if full_days <= 0:
        amount = forecast(spent, [today_spent] if today_spent else [], days_left)
        return SpendForecast(amount, today_spent, 0, None, None)
    yesterday = today - timedelta(days=1)
    recent = [point["cost"] for point in usage_trend(
        organization=organization, days=full_days, today=yesterday)]  # fmt: skip
    rate = sum(recent, ZERO) / len(recent)
    return SpendForecast(
        forecast(spent, recent, days_left),
        rate,
        full_days,
        yesterday - timedelta(days=full_days - 1),
        yesterday,
    )


def top_consumers(*, organization: Organization | None, limit: int = 10, **filters) -> list[dict]:
    """The end users (within an organisation) or organisations (platform-wide) with the
    highest cost."""
    key = "user_id" if organization is not None else "organization__slug"
    rows = (
        daily_usage(organization=organization, **filters)
        .values(key)
        .annotate(**_totals())
        .order_by("-cost", key)[:limit]
    )
    return [
        {"consumer": row[key], "quantity": row["quantity"], "cost": row["cost"],
         "events": row["events"]}
        for row in rows
    ]  # fmt: skip


def billing_stats(*, organization: Organization | None, start: date, end: date) -> dict:
    """Seed 003's stats. Revenue, users and organisations come from the daily rollup;
    record counts by status from the records' (organisation, status) index, since a
    record's status moves after it was rolled up."""
    usage = daily_usage(organization=organization, start=start, end=end)
    by_service = {
        row["service_type"]: row["cost"]
        for row in usage.values("service_type").annotate(cost=Coalesce(Sum("cost"), ZERO))
    }
    by_method = {
        row["billing_method"]: row["cost"]
        for row in usage.values("billing_method").annotate(cost=Coalesce(Sum("cost"), ZERO))
    }
    people = usage.aggregate(
        users=Count("user_id", distinct=True, filter=~Q(user_id="")),
        organizations=Count("organization", distinct=True),
    )
    records = billing_records(organization=organization, start=start, end=end).order_by()
    counts = records.aggregate(
        total=Count("id"),
        **{
            status: Count("id", filter=Q(status=status))
            for status in (BillingStatus.PENDING, BillingStatus.COMPLETED, BillingStatus.FAILED)
        },
    )
    return {
        "total_billing_records": counts["total"],
        "pending_billing_records": counts[BillingStatus.PENDING],
        "completed_billing_records": counts[BillingStatus.COMPLETED],
        "failed_billing_records": counts[BillingStatus.FAILED],
        "total_revenue": sum(by_service.values(), ZERO),
        "revenue_by_service": by_service,
        "revenue_by_method": by_method,
        "active_users": people["users"],
        "active_organizations": people["organizations"],
    }


def spent_in_budget_scope(budget, start: datetime, end: datetime | None) -> Decimal:
    """What the budget's organisation spent from ``start`` to ``end`` (None: ever) under
    the budget's scope: the daily rollup's cost (a period starts at a local midnight, so
    its days are whole), or the records of the scope's API key (the rollup has no key)."""
    organization = budget.organization
    if budget.scope == Budget.Scope.API_KEY:
        records = BillingRecord.objects.filter(
            organization=organization,
            event__api_key_id=budget.api_key_id,
            occurred_at__gte=start,
        ).exclude(billing_method=BillingMethod.PAYMENT_CHARGE, status=BillingStatus.REFUNDED)
        if end is not None:
            records = records.filter(occurred_at__lt=end)
        return records.aggregate(total=Coalesce(Sum("total_amount"), ZERO))["total"]  # fmt: skip
    rows = DailyUsage.objects.filter(
        organization=organization, day__gte=local_day(start, organization.tz)
    )
    if end is not None:
        rows = rows.filter(day__lt=local_day(end, organization.tz))
    if budget.scope == Budget.Scope.PRODUCT:
        rows = rows.filter(product_id=budget.product_id)
    elif budget.scope == Budget.Scope.SERVICE_TYPE:
        rows = rows.filter(service_type=budget.service_type_id)
    return rows.aggregate(total=Coalesce(Sum("cost"), ZERO))["total"]
