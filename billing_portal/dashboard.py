"""The finance dashboard: the admin's index. Every figure is a short query over small
tables (rollups, subscriptions, current budget periods, wallets) and links to the filtered
changelist behind it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum
from django.urls import reverse
from django.utils import timezone

from apps.budgets.models import BudgetPeriod
from apps.core import charts
from apps.customers.models import CreditGrant, Organization, SubscriptionStatus, Wallet
from apps.pricing.models import Plan
from apps.usage.models import BillingRecord, BillingStatus, DailyUsage

ZERO = Decimal(0)
NEAR_BUDGET = Decimal("0.8")  # "near" is 80 % of the limit
PAYING = [SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE]


def changelist(model_path: str, **filters) -> str:
    url = reverse(f"admin:{model_path.replace('.', '_')}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


@dataclass
class Figure:
    label: str
    value: object
    url: str
    note: str = ""


def month_bounds(today: date) -> tuple[date, date, date]:
    """First day of this month, of last month, and the same day last month (for a fair
    month-to-date comparison)."""
    first = today.replace(day=1)
    last_first = (first - timedelta(days=1)).replace(day=1)
    same_day = min(today.day, (first - timedelta(days=1)).day)
    return first, last_first, last_first.replace(day=same_day)


def _by_currency(rows, value: str = "total") -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        totals[row["currency"]] += row[value] or ZERO
    return dict(sorted(totals.items()))


def subscriptions_by_plan() -> list[dict]:
    """Paying subscriptions (active and past due) and trials per plan, with the monthly
    recurring revenue of the paying ones (a yearly fee counts a twelfth)."""
    rows = (
        Organization.objects.filter(plan__isnull=False)
        .values(
            "plan_id", "plan__name", "plan__base_fee", "plan__currency", "plan__billing_interval"
        )  # fmt: skip
        .annotate(
            paying=Count("pk", filter=Q(subscription_status__in=PAYING)),
            trialing=Count("pk", filter=Q(subscription_status=SubscriptionStatus.TRIALING)),
        )
        .order_by("plan__name")
    )
    result = []
    for row in rows:
        fee = row["plan__base_fee"] or ZERO
        if row["plan__billing_interval"] == Plan.Interval.YEAR:
            fee = fee / 12
        result.append({
            "plan": row["plan__name"],
            "currency": row["plan__currency"],
            "paying": row["paying"],
            "trialing": row["trialing"],
            "mrr": fee * row["paying"],
            "url": changelist("customers.organization", plan__id__exact=row["plan_id"]),
            "paying_url": changelist("customers.organization", plan__id__exact=row["plan_id"],
                                     subscription_status__in="active,past_due"),
        })  # fmt: skip
    return result


def usage_revenue(start: date, end: date) -> dict[str, Decimal]:
    """What usage from ``start`` to ``end`` (inclusive) cost, per currency, from the
    rollup (paid from credits, the wallet or invoiced)."""
    rows = (
        DailyUsage.objects.filter(day__gte=start, day__lte=end)
        .values(currency=F("organization__currency"))
        .annotate(total=Sum("cost"))
        .order_by()
    )
    return _by_currency(rows)


def dashboard(now=None) -> dict:
    now = now or timezone.now()
    today = now.date()
    first, last_first, last_same_day = month_bounds(today)
    # This month's days are each organisation's own (its rollup's): late in the UTC
    # evening an organisation east of UTC is already on the next day, which is this
    # month's too unless the month turns there first.
    next_first = (first + timedelta(days=32)).replace(day=1)
    month_end = next_first - timedelta(days=1)

    plans = subscriptions_by_plan()
    mrr = _by_currency([{"currency": p["currency"], "total": p["mrr"]} for p in plans])
    this_month = usage_revenue(first, month_end)
    last_month_to_date = usage_revenue(last_first, last_same_day)
    last_month = usage_revenue(last_first, first - timedelta(days=1))

    by_service = list(
        DailyUsage.objects.filter(day__gte=first, day__lte=month_end)
        .values("service_type", currency=F("organization__currency"))
        .annotate(total=Sum("cost"))
        .order_by("currency", "-total")
    )
    top = list(
        DailyUsage.objects.filter(day__gte=first, day__lte=month_end)
        .values("organization_id", "organization__name", currency=F("organization__currency"))
        .annotate(total=Sum("cost"))
        .order_by("-total")[:10]
    )
    for row in top:
        row["url"] = reverse("admin:customers_organization_change", args=[row["organization_id"]])

    share = ExpressionWrapper(
        F("spent") / F("budget__limit"), output_field=DecimalField(max_digits=30, decimal_places=6)
    )
    at_risk = list(
        BudgetPeriod.objects.filter(
            Q(ends_at__gt=now) | Q(ends_at__isnull=True),
            starts_at__lte=now,
            budget__is_active=True,
            budget__limit__gt=0,
        )
        .filter(spent__gte=F("budget__limit") * NEAR_BUDGET)
        .annotate(share=share)
        .select_related("budget__organization")
        .order_by("-share")[:20]
    )
    failed_rows = list(
        BillingRecord.objects.filter(status=BillingStatus.FAILED)
        .values("currency")
        .annotate(count=Count("pk"), total=Sum("total_amount"))
        .order_by("currency")
    )
    failed = {
        "count": sum(row["count"] for row in failed_rows),
        "totals": _by_currency(failed_rows),
    }
    past_due = Organization.objects.filter(subscription_status=SubscriptionStatus.PAST_DUE).count()
    wallets = _by_currency(
        Wallet.objects.filter(balance__gt=0).values("currency").annotate(total=Sum("balance"))
    )
    credits = _by_currency(
        CreditGrant.objects.filter(remaining__gt=0)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values("currency")
        .annotate(total=Sum("remaining"))
    )
    liabilities = {c: wallets.get(c, ZERO) + credits.get(c, ZERO) for c in {*wallets, *credits}}

    day_filter = {"day__gte": first.isoformat(), "day__lte": month_end.isoformat()}
    currencies = {row["currency"] for row in by_service}

    def label(row) -> str:
        return row["service_type"] + ("" if len(currencies) == 1 else f" ({row['currency']})")

    chart_rows = [(label(row), row["total"] or ZERO) for row in by_service]
    return {
        "plans": plans,
        "mrr": mrr,
        "paying": sum(p["paying"] for p in plans),
        "trialing": sum(p["trialing"] for p in plans),
        "this_month": this_month,
        "last_month_to_date": last_month_to_date,
        "last_month": last_month,
        "month_start": first,
        "usage_url": changelist("usage.dailyusage", day__gte=first.isoformat()),
        "last_month_url": changelist(
            "usage.dailyusage", day__gte=last_first.isoformat(), day__lt=first.isoformat()
        ),
        "by_service": [
            {
                **row,
                "url": changelist(
                    "usage.dailyusage", service_type=row["service_type"], **day_filter
                ),
            }
            for row in by_service
        ],  # fmt: skip
        "service_chart": charts.horizontal_bars(
            chart_rows, fmt=lambda v: f"{v:,.2f}", label="Usage cost by service type, this month"
        ),
        "top": top,
        "at_risk": at_risk,
        "at_risk_url": changelist("budgets.budgetperiod", ends_at__gt=now.isoformat()),
        "mrr_url": changelist("customers.organization", subscription_status__in="active,past_due"),
        "failed": failed,
        "failed_url": changelist("usage.billingrecord", status__exact=BillingStatus.FAILED),
        "past_due": past_due,
        "past_due_url": changelist(
            "customers.organization", subscription_status__exact=SubscriptionStatus.PAST_DUE
        ),
        "wallets": wallets,
        "credits": credits,
        "liabilities": dict(sorted(liabilities.items())),
        "wallets_url": changelist("customers.wallet", balance__gt="0"),
        "credits_url": changelist("customers.creditgrant", remaining__gt="0"),
    }
