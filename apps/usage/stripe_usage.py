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

A day in which a subscription period starts (its anchor time, e.g. 14:37) is reported in
parts: what occurred before that instant is stamped before it and what occurred after is
stamped after it, so each invoice bills exactly the usage that its payment settles (the
records whose ``occurred_at`` falls in its period).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone
from djstripe import models as djstripe

from apps.core import stripe_gateway
from apps.customers import billing
from apps.pricing.models import BillingMethod, Product
from apps.pricing.periods import midnight
from apps.pricing.stripe_catalog import METER_SCALE
from apps.usage.models import (
    BillingEvent,
    BillingRecord,
    BillingStatus,
    DailyUsage,
    StripeUsageReport,
)

logger = logging.getLogger(__name__)

WINDOW_DAYS = 34
ZERO = Decimal(0)


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
    """What each (product, day, part) still owes the meters, then one event at a time, each
    sent and recorded in its own transaction under the organisation's lock: a failure
    loses at most the record of the one event in flight (its identifier is derived again
    by the next run), never the records of the events already sent."""
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
        boundaries = period_boundaries(organization, customer_id, since=midnight(since, tz))
        owed = []
        for row in costs:
            product, day = products[row["product_id"]], row["day"]
            start, end = midnight(day, tz), midnight(day + timedelta(days=1), tz)
            inside = [b for b in boundaries if start < b < end]
            for segment in _segments(organization, product, row["cost"], start, end, inside):
                owed.append((product, day, segment))
    for product, day, segment in owed:
        with transaction.atomic():
            organization = billing.lock_organization(organization_id)
            before = (
                StripeUsageReport.objects.filter(
                    organization=organization, product=product, day=day,
                    segment_start=segment.start,
                ).aggregate(units=Sum("value"))["units"]
                or 0
            )  # fmt: skip
            missing = meter_units(segment.cost) - before
            if missing > 0:
                _send(organization, customer_id, product, day, segment, before, missing, now, run)


@dataclass(frozen=True)
class Segment:
    """A part of a day reported as its own stream: ``start`` None for the day's first part
    (the whole day when no period starts inside it); ``stamp`` inside the part."""

    start: datetime | None
    cost: Decimal
    stamp: datetime


def period_boundaries(organization, customer_id: str, *, since: datetime) -> list[datetime]:
    """The instants where a subscription period of the customer starts or ends: from the
    invoices dj-stripe holds and the current subscription's period."""
    instants = set()
    invoices = djstripe.Invoice.objects.filter(
        customer_id=customer_id, created__gte=since - timedelta(days=40)
    ).values_list("stripe_data", flat=True)
    for data in invoices:
        for key in ("period_start", "period_end"):
            if (data or {}).get(key):
                instants.add(datetime.fromtimestamp(int(data[key]), UTC))
    summary = billing.subscription_summary(organization)
    for key in ("current_period_start", "current_period_end"):
        if summary.get(key):
            instants.add(datetime.fromtimestamp(int(summary[key]), UTC))
    return sorted(instant for instant in instants if instant >= since)


def _segments(organization, product, cost: Decimal, start, end, inside) -> list[Segment]:
    """The day's postpaid cost split where a period starts inside it: each invoice then
    bills the usage of its own period, as settlement counts it (by ``occurred_at``)."""
    noon = start + timedelta(hours=12)
    if not inside:
        return [Segment(None, cost, noon)]
    bounds = [*inside, end]
    # What each later part cost, from its billing records (the rollup has whole days);
    # a charge voided before it was paid is out of the rollup, so out of here too.
    voided = Q(status=BillingStatus.REFUNDED) & ~Exists(
        BillingEvent.objects.filter(record=OuterRef("pk"), to_status=BillingStatus.COMPLETED)
    )
    parts = (
        BillingRecord.objects.filter(
            organization=organization,
            product=product,
            billing_method=BillingMethod.PAYMENT_CHARGE,
            occurred_at__gte=inside[0],
            occurred_at__lt=end,
        )
        .exclude(voided)
        .aggregate(
            **{
                f"part{i}": Sum("total_amount", filter=Q(occurred_at__gte=b, occurred_at__lt=nxt))
                for i, (b, nxt) in enumerate(zip(bounds, bounds[1:], strict=False))
            }
        )
    )
    later = [parts[f"part{i}"] or ZERO for i in range(len(inside))]
    one_second = timedelta(seconds=1)
    segments = [
        Segment(None, max(ZERO, cost - sum(later, ZERO)), min(noon, inside[0] - one_second))
    ]
    for i, boundary in enumerate(inside):
        stamp = min(max(noon, boundary), bounds[i + 1] - one_second)
        segments.append(Segment(boundary, later[i], stamp))
    return segments


def _send(organization, customer_id, product, day, segment: Segment, before, value, now, run):
    part = "" if segment.start is None else f"T{segment.start.astimezone(UTC):%H%M%S}"
    identifier = f"bp-{organization.pk}-{product.pk}-{day:%Y%m%d}{part}-{before}"
    # Stamped inside its part of the day, never ahead of now.
    timestamp = int(min(segment.stamp, now - timedelta(seconds=1)).timestamp())
    try:
        stripe.billing.MeterEvent.create(
            api_key=stripe_gateway.api_key(),
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
        segment_start=segment.start,
        value=value,
        identifier=identifier,
        stripe_customer_id=customer_id,
        event_name=product.stripe_meter_event_name,
    )
    run.events += 1
    run.units += value
