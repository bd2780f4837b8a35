"""Postpaid usage reported to Stripe as billing meter events, from the daily rollup.

For each organisation with a Stripe customer, each product with a Stripe meter and each
day of the last ``WINDOW_DAYS`` (Stripe takes meter events up to 35 days old), the
``payment_charge`` cost in the rollup is converted to meter units (millionths of the
currency, half up) and what earlier reports have not yet sent is sent as one meter event.
Each event's identifier — also its Stripe idempotency key — is derived from the units
reported before it, so:

- a second run sends nothing (nothing is missing);
- usage that arrives later for a day is sent as one more event, for the difference;
- a run that crashed after Stripe took an event, before it was recorded here, computes the
  same identifier again; Stripe refuses the duplicate and the report is recorded then;
- two runs at once serialise on the organisation's row.

Amounts that shrink after they were reported (refunds) are never sent negative: meter
events only add. They are settled on the statement as credit notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from djstripe import models as djstripe

from apps.customers import billing
from apps.pricing.models import BillingMethod, Product
from apps.pricing.stripe_catalog import METER_SCALE
from apps.usage.models import DailyUsage, StripeUsageReport

logger = logging.getLogger(__name__)

WINDOW_DAYS = 34


@dataclass
class RunReport:
    events: int = 0
    units: int = 0
    recovered: int = 0  # events Stripe already had from an interrupted run


def meter_units(cost: Decimal) -> int:
    return int((cost * METER_SCALE).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def report_all(*, now: datetime | None = None) -> RunReport:
    run = RunReport()
    if not settings.STRIPE_ENABLED:
        return run
    now = now or timezone.now()
    products = {
        p.pk: p for p in Product.objects.exclude(stripe_meter_event_name="").filter(is_active=True)
    }
    if not products:
        return run
    customers = djstripe.Customer.objects.filter(
        subscriber__isnull=False, livemode=settings.STRIPE_LIVE_MODE
    ).values_list("subscriber_id", "id")
    for organization_id, customer_id in customers:
        report_organization(organization_id, customer_id, products, now=now, run=run)
    return run


def report_organization(organization_id, customer_id, products, *, now, run: RunReport) -> None:
    with transaction.atomic():
        organization = billing.lock_organization(organization_id)
        tz = organization.tz
        today = timezone.localtime(now, tz).date()
        since = today - timedelta(days=WINDOW_DAYS)
        costs = (
            DailyUsage.objects.filter(
                organization=organization,
                billing_method=BillingMethod.PAYMENT_CHARGE,
                product_id__in=products,
                day__gte=since,
            )
            .values("product_id", "day")
            .annotate(cost=Sum("cost"))
            .order_by("day", "product_id")
        )
        reported = {
            (row["product_id"], row["day"]): row["units"]
            for row in StripeUsageReport.objects.filter(organization=organization, day__gte=since)
            .values("product_id", "day")
            .annotate(units=Sum("value"))
            .order_by()
        }
        for row in costs:
            product = products[row["product_id"]]
            before = reported.get((product.pk, row["day"]), 0)
            missing = meter_units(row["cost"]) - before
            if missing <= 0:
                continue
            _send(organization, customer_id, product, row["day"], before, missing, now, run)


def _send(organization, customer_id, product, day, before, value, now, run) -> None:
    identifier = f"bp-{organization.pk}-{product.pk}-{day:%Y%m%d}-{before}"
    # Stamped inside its day (noon, the organisation's time), never ahead of now.
    stamp = datetime.combine(day, time(12), tzinfo=organization.tz)
    timestamp = int(min(stamp, now - timedelta(seconds=1)).timestamp())
    try:
        stripe.billing.MeterEvent.create(
            api_key=billing.api_key(),
            event_name=product.stripe_meter_event_name,
            identifier=identifier,
            timestamp=timestamp,
            payload={"stripe_customer_id": customer_id, "value": str(value)},
            idempotency_key=identifier,
        )
    except stripe.InvalidRequestError as error:
        if getattr(error, "param", None) != "identifier":
            raise
        run.recovered += 1  # sent by a run that stopped before recording it
        logger.info("Meter event %s was already with Stripe; recording it", identifier)
    StripeUsageReport.objects.create(
        organization=organization,
        product=product,
        day=day,
        value=value,
        identifier=identifier,
        stripe_customer_id=customer_id,
        event_name=product.stripe_meter_event_name,
    )
    run.events += 1
    run.units += value
