"""Customer billing pages that read several apps: the overview (spend, forecast, budgets,
wallet, alerts) and invoices (this period's charges by product, Stripe's invoices)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from djstripe import models as djstripe

from apps.budgets import selectors as budget_selectors
from apps.budgets.models import Alert
from apps.core import charts, stripe_gateway
from apps.customers import billing, wallets
from apps.customers.access import member_view
from apps.customers.templatetags.billing import money
from apps.customers.views import page, timestamp
from apps.pricing import selectors as pricing_selectors
from apps.pricing.cost_engine import from_minor_units
from apps.pricing.models import Product
from apps.pricing.periods import local_day
from apps.usage import selectors as usage_selectors
from apps.usage.models import BillingMethod

ZERO = Decimal(0)


# --- overview -----------------------------------------------------------------------------


@member_view()
def overview(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    now = timezone.now()
    tz = organization.tz
    start, end = billing.billing_period(organization, now)
    first_day, today = local_day(start, tz), local_day(now, tz)
    last_day = local_day(end - timedelta(microseconds=1), tz)
    trend = usage_selectors.usage_trend(
        organization=organization, days=(today - first_day).days + 1, today=today
    )
    daily = [point["cost"] for point in trend]
    spent = sum(daily, ZERO)
    days_left = (last_day - today).days  # whole days after today
    # The rate of the last full days (today is not over), whatever period they are in.
    outlook = usage_selectors.spend_forecast(
        organization=organization, today=today, spent=spent, today_spent=daily[-1],
        days_left=days_left,
    )  # fmt: skip
    projected = outlook.amount

    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    cumulative, running = [], ZERO
    for value in daily:
        running += value
        cumulative.append(running)
    cumulative += [None] * (len(days) - len(cumulative))
    forecast_line = [None] * len(days)
    if days_left > 0 and cumulative:
        index = len(daily) - 1
        forecast_line[index] = cumulative[index]
        forecast_line[-1] = projected

    statuses = budget_selectors.budget_statuses(
        budget_selectors.budgets_of(organization).order_by("name", "id"), at=now
    )
    overall = next(
        (
            s
            for s in statuses
            if s.budget.is_active and s.budget.scope == "all" and s.budget.period == "monthly"
        ),
        None,
    )
    currency = organization.currency
    summary = billing.subscription_summary(organization) if stripe_gateway.enabled() else {}
    trial_end = timestamp(summary.get("trial_end"))
    alerts = (
        Alert.objects.filter(period__budget__organization=organization)
        .select_related("period__budget")
        .order_by("-created_at")[:5]
    )
    return page(
        request,
        "billing/overview.html",
        {
            "plan": pricing_selectors.effective_plan(organization.plan),
            "subscription": summary,
            "renews_at": timestamp(summary.get("current_period_end")),
            "trial_days_left": days_left_until(trial_end, now) if trial_end else None,
            "period_start": start,
            "period_last_day": last_day,
            "spent": spent,
            "forecast": projected,
            "outlook": outlook,
            "days_left": days_left,
            "chart": charts.spend_line(
                days,
                cumulative,
                forecast_line,
                fmt=lambda v: money(v, currency),
                label=f"Spend this period and forecast, {currency}",
                limit=overall.budget.limit if overall else None,
            ),
            "statuses": statuses,
            "wallet_balance": wallets.wallet_balance(organization),
            "credit_balance": wallets.credit_balance(organization, now),
            "alerts": alerts,
        },
    )


def days_left_until(end: datetime, now: datetime) -> int:
    """Whole days left, a started day counting as one (13.2 days left is "14 days")."""
    seconds = (end - now).total_seconds()
    return max(0, math.ceil(seconds / 86400))


# --- invoices -----------------------------------------------------------------------------


@member_view()
def invoices(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    now = timezone.now()
    start, end = billing.billing_period(organization, now)
    tz = organization.tz
    rows = usage_selectors.usage_aggregations(
        group_by=["product", "billing_method"],
        organization=organization,
        start=local_day(start, tz),
        end=local_day(now, tz),
    )
    names = dict(Product.objects.values_list("code", "name"))
    charged = [
        {**row, "name": names.get(row["product"], row["product"])}
        for row in rows
        if row["billing_method"] == BillingMethod.PAYMENT_CHARGE
    ]
    paid_otherwise = {}
    for row in rows:
        if row["billing_method"] != BillingMethod.PAYMENT_CHARGE:
            method = BillingMethod(row["billing_method"]).label
            paid_otherwise[method] = paid_otherwise.get(method, ZERO) + row["cost"]
    invoice_list = [
        present_invoice(invoice, organization.currency)
        for invoice in djstripe.Invoice.objects.filter(customer__subscriber=organization).order_by(
            "-created"
        )[:50]
    ]
    return page(
        request,
        "billing/invoices.html",
        {
            "invoices": invoice_list,
            "period_start": start,
            "period_end": end,
            "charged": sorted(charged, key=lambda row: -row["cost"]),
            "charged_total": sum((row["cost"] for row in charged), ZERO),
            "paid_otherwise": sorted(paid_otherwise.items()),
        },
    )


def present_invoice(invoice, default_currency: str) -> dict:
    """What the invoices page shows of a Stripe invoice (amounts arrive in minor units)."""
    data = invoice.stripe_data or {}
    currency = (data.get("currency") or default_currency).upper()
    return {
        "number": data.get("number") or invoice.id,
        "period_start": timestamp(data.get("period_start")),
        "period_end": timestamp(data.get("period_end")),
        "total": from_minor_units(int(data.get("total") or 0), currency),
        "amount_due": from_minor_units(int(data.get("amount_due") or 0), currency),
        "currency": currency,
        "status": data.get("status") or "",
        "hosted_invoice_url": data.get("hosted_invoice_url") or "",
        "invoice_pdf": data.get("invoice_pdf") or "",
    }
