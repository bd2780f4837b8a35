"""Statements and the close of a billing period.

A statement lists what an organisation's usage of one period cost, per product and
dimension, then the base fee, what credits and the wallet already paid, refunds and the
adjustments for late usage of earlier, closed periods; the total due is what is left to
invoice. Each line is rounded to the currency's minor unit once, by the cost engine's one
rule (``round_money``: half away from zero), and every total is a sum of rounded lines;
``rounding_difference`` shows what rounding per line moved against the events' own costs.

The close, step by step, each step stamped on the statement when done, so a rerun (or a
second worker, serialised by the organisation's row lock) resumes after the last:

1. **freeze**: the statement row exists for (organisation, period start); records
   created after ``frozen_at`` for this period are late and go to the next statement.
   The freeze takes the organisation's period lock exclusively (``apps.core.period_lock``),
   so every write stamped at or before it has committed and every later one is stamped
   after it;
2. **build**: lines from the frozen billing records (their per-dimension breakdown);
3. **check**: the lines agree exactly with the records' own totals, and the daily rollup
   agrees exactly with the records for every day the period touches (read in one
   snapshot); otherwise the statement stops as ``mismatch`` with the differences;
4. **finalise**: the statement is final and never changes again.

A stopped statement is run again by ``rerun`` once the records or the rollup are put
right: its lines are built again (they never went out) and the close goes on.

Which records count is what the rollup counts: every record but a postpaid charge voided
before it was paid.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.core import period_lock, stripe_gateway
from apps.core.errors import PortalError
from apps.customers.models import Organization, SubscriptionStatus
from apps.pricing import selectors as pricing_selectors
from apps.pricing.cost_engine import (
    CONTEXT,
    PricingModel,
    minimum_true_up,
    period_total,
    round_money,
)
from apps.pricing.models import BillingMethod, Product
from apps.pricing.periods import local_day
from apps.usage.models import (
    BillingEvent,
    BillingRecord,
    BillingStatus,
    DailyUsage,
    Statement,
    StatementLine,
)
from apps.usage.sums import exact_sum, exact_sums

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
BASE_FEE_STATUSES = {SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE}


class PeriodNotEnded(PortalError):
    code = "period_not_ended"
    status_code = 409
    message = "The period has not ended yet; it is closed after its end."


class EarlierPeriodOpen(PortalError):
    code = "earlier_period_open"
    status_code = 409
    message = "An earlier period of this organisation is not closed yet; close it first."


class WritersInFlight(PortalError):
    code = "close_writers_in_flight"
    status_code = 503
    message = "Usage was still being written when the freeze waited; the close is retried."


class PeriodAlreadyClosed(PortalError):
    code = "period_already_closed"
    status_code = 409
    message = "This period's statement is final; late usage goes to the next statement."


# --- which records ----------------------------------------------------------------------


def _moved(to_status: str, as_of: datetime | None):
    events = BillingEvent.objects.filter(record=OuterRef("pk"), to_status=to_status)
    return Exists(events.filter(created_at__lte=as_of) if as_of else events)


def counted(records, as_of: datetime | None = None):
    """The records the rollup counts: all but postpaid charges voided before being paid
    (as they stood at ``as_of``: a statement reads its records as of its freeze, so what
    happens to them later never changes what it counted)."""
    voided = (
        Q(billing_method=BillingMethod.PAYMENT_CHARGE)
        & _moved(BillingStatus.REFUNDED, as_of)
        & ~_moved(BillingStatus.COMPLETED, as_of)
    )
    return records.exclude(voided)


def refunded_as_of(records, as_of: datetime):
    """``records`` marked with whether they had been refunded at ``as_of``."""
    return records.annotate(refunded_then=_moved(BillingStatus.REFUNDED, as_of))


def frozen_records(statement: Statement):
    return counted(
        BillingRecord.objects.filter(
            organization_id=statement.organization_id,
            occurred_at__gte=statement.period_start,
            occurred_at__lt=statement.period_end,
            created_at__lte=statement.frozen_at,
        ),
        as_of=statement.frozen_at,
    )


def late_records(statement: Statement, previous: Statement | None):
    """Usage of earlier, closed periods recorded after their close: created after the
    previous statement froze (or ever, for a first statement), up to this one's freeze."""
    records = BillingRecord.objects.filter(
        organization_id=statement.organization_id,
        occurred_at__lt=statement.period_start,
        created_at__lte=statement.frozen_at,
    )
    closed = Statement.objects.filter(
        organization_id=statement.organization_id,
        status=Statement.Status.FINAL,
        period_start__lte=OuterRef("occurred_at"),
        period_end__gt=OuterRef("occurred_at"),
        frozen_at__lt=OuterRef("created_at"),
    )
    records = records.filter(Exists(closed))
    if previous is not None:
        records = records.filter(created_at__gt=previous.frozen_at)
    return counted(records, as_of=statement.frozen_at)


# --- building the lines ---------------------------------------------------------------------


@dataclass
class _Sum:
    quantity: Decimal = ZERO
    included: Decimal = ZERO
    billable: Decimal = ZERO
    amount: Decimal = ZERO


def usage_by_dimension(records) -> dict[tuple[int, str], _Sum]:
    """Quantities and full-precision amounts per (product, dimension), from the records'
    breakdowns: set-based on PostgreSQL, streamed elsewhere."""
    sums: dict[tuple[int, str], _Sum] = defaultdict(_Sum)
    if connection.vendor == "postgresql":
        sql, params = records.values("product_id", "breakdown").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT r.product_id, line->>'dimension',
                       sum((line->>'quantity')::numeric),
                       sum((line->>'included_quantity')::numeric),
                       sum((line->>'billable_quantity')::numeric),
                       sum((line->>'amount')::numeric)
                    FROM ({sql}) r, jsonb_array_elements(r.breakdown) line
                    GROUP BY 1, 2""",
                params,
            )
            for product_id, dimension, quantity, included, billable, amount in cursor:
                sums[(product_id, dimension)] = _Sum(quantity, included, billable, amount)
        return dict(sums)
    for product_id, breakdown in records.values_list("product_id", "breakdown").iterator(2000):
        for line in breakdown:
            entry = sums[(product_id, line["dimension"])]
            entry.quantity += Decimal(line["quantity"])
            entry.included += Decimal(line["included_quantity"])
            entry.billable += Decimal(line["billable_quantity"])
            entry.amount += Decimal(line["amount"])
    return dict(sums)


@dataclass
class Draft:
    lines: list[dict] = field(default_factory=list)

    def add(self, kind: str, description: str, unrounded: Decimal, currency: str, **extra):
        self.lines.append({
            "kind": kind, "description": description, "amount_unrounded": unrounded,
            "amount": round_money(unrounded, currency), **extra,
        })  # fmt: skip


def draft(statement: Statement, previous: Statement | None) -> Draft:
    """The statement's lines, from its frozen records (and the late ones of closed
    periods), each rounded once."""
    currency = statement.currency
    records = frozen_records(statement)
    products = {p.pk: p for p in Product.objects.all()}
    result = Draft()
    K = StatementLine.Kind
    usage = usage_by_dimension(records)
    for (product_id, dimension), s in sorted(
        usage.items(), key=lambda item: (products[item[0][0]].code, item[0][1])
    ):
        product = products[product_id]
        unit_price = CONTEXT.divide(s.amount, s.billable) if s.billable else ZERO
        label = product.name if dimension == "units" else f"{product.name}: {dimension}"
        result.add(K.USAGE, label, s.amount, currency, product=product, dimension=dimension,
                   quantity=s.quantity, included_quantity=s.included, billable_quantity=s.billable,
                   unit_price=unit_price.normalize(CONTEXT))  # fmt: skip
    plan = statement.plan
    organization = statement.organization
    # A price with a minimum charge per period: what the period's usage of that dimension
    # cost is topped up to it (for the dimensions used in the period).
    last_instant = statement.period_end - timedelta(microseconds=1)
    pricing_plan = pricing_selectors.effective_plan(plan)
    for (product_id, dimension), s in sorted(usage.items(), key=lambda item: item[0]):
        product = products[product_id]
        sheet = pricing_selectors.price_sheet(plan=pricing_plan, product=product)
        version = sheet.rule_at(dimension, last_instant)
        if version is not None and version.terms.model == PricingModel.VOLUME:
            # Events were priced as the period grew; the period's tier now prices every
            # unit, and the difference is credited here (never a negative event).
            priced = s.quantity - s.included
            credit = period_total(version.terms, priced) - s.amount
            if credit < 0:
                result.add(K.VOLUME_CREDIT, f"{product.name}: volume price for the period",
                           credit, currency, product=product, dimension=dimension)  # fmt: skip
        minimum = version.terms.minimum_charge if version else ZERO
        true_up = minimum_true_up(s.amount, minimum) if minimum else ZERO
        if true_up:
            result.add(K.MINIMUM, f"{product.name}: minimum of {minimum} per period", true_up,
                       currency, product=product, dimension=dimension)  # fmt: skip
    status = organization_as_of(organization, statement.period_end - timedelta(microseconds=1))
    if plan is not None and plan.base_fee and status.subscription_status in BASE_FEE_STATUSES:
        result.add(K.BASE_FEE, f"{plan.name} plan", plan.base_fee, currency)
    paid_by = exact_sums(
        refunded_as_of(records, statement.frozen_at),
        ["billing_method", "refunded_then"],
        "total_amount",
    )
    refunded = sum((v for (_, was_refunded), v in paid_by.items() if was_refunded), ZERO)
    if refunded:
        result.add(K.REFUND, "Refunded usage", -refunded, currency)
    credits = paid_by.get((BillingMethod.CREDIT_CONSUMPTION, False), ZERO)
    if credits:
        result.add(K.CREDITS, "Paid with credits", -credits, currency)
    wallet = paid_by.get((BillingMethod.WALLET_DEDUCTION, False), ZERO)
    if wallet:
        result.add(K.WALLET, "Paid from the prepaid wallet", -wallet, currency)
    late = late_records(statement, previous)
    for product_id, total in sorted(exact_sums(late, "product_id", "total_amount").items()):
        product = products[product_id]
        result.add(K.ADJUSTMENT, f"{product.name}: late usage of a closed period", total,
                   currency, product=product)  # fmt: skip
    late = refunded_as_of(late, statement.frozen_at)
    late_prepaid = exact_sum(
        late.filter(
            billing_method__in=[BillingMethod.CREDIT_CONSUMPTION, BillingMethod.WALLET_DEDUCTION],
            refunded_then=False,
        ),
        "total_amount",
    )
    if late_prepaid:
        result.add(K.ADJUSTMENT, "Late usage already paid from credits or the wallet",
                   -late_prepaid, currency)  # fmt: skip
    late_refunded = exact_sum(late.filter(refunded_then=True), "total_amount")
    if late_refunded:  # as the period's own refunds are
        result.add(K.ADJUSTMENT, "Late usage refunded", -late_refunded, currency)
    credited = exact_sum(refunded_after_close(statement, previous), "total_amount")
    if credited:
        result.add(K.CREDIT_NOTE, "Refunded charges of a closed period", -credited, currency)
    return result


def refunded_after_close(statement: Statement, previous: Statement | None):
    """Postpaid charges carried by an earlier final statement (their period's, or a later
    one's as late usage) and voided after it froze, up to this one's freeze (after the
    previous one's): credit notes, never an edit of the closed statement. A charge that
    was paid and then refunded went back to the wallet instead."""
    final = Statement.objects.filter(
        organization_id=statement.organization_id, status=Statement.Status.FINAL
    )
    covering = final.filter(
        period_start__lte=OuterRef("occurred_at"),
        period_end__gt=OuterRef("occurred_at"),
        frozen_at__gte=OuterRef("created_at"),
    ).values("frozen_at")[:1]
    carrying_late = (
        final.filter(
            period_start__gt=OuterRef("occurred_at"), frozen_at__gte=OuterRef("created_at")
        )
        .order_by("frozen_at")
        .values("frozen_at")[:1]
    )
    refunds = BillingEvent.objects.filter(
        record=OuterRef("pk"),
        to_status=BillingStatus.REFUNDED,
        created_at__lte=statement.frozen_at,
        created_at__gt=OuterRef("carried_at"),
    )
    if previous is not None:
        refunds = refunds.filter(created_at__gt=previous.frozen_at)
    paid = BillingEvent.objects.filter(record=OuterRef("pk"), to_status=BillingStatus.COMPLETED)
    return (
        BillingRecord.objects.filter(
            organization_id=statement.organization_id,
            billing_method=BillingMethod.PAYMENT_CHARGE,
            status=BillingStatus.REFUNDED,
            occurred_at__lt=statement.period_start,
        )
        .annotate(carried_at=Coalesce(Subquery(covering), Subquery(carrying_late)))
        .filter(carried_at__isnull=False, carried_at__lt=statement.frozen_at)
        .filter(Exists(refunds))
        .exclude(Exists(paid))
    )


# --- the cross-check ------------------------------------------------------------------------


def cross_check(statement: Statement) -> dict:
    """Differences between the lines and the records, and between the rollup and the
    records for every day the period touches; empty when they agree exactly."""
    problems: dict = {}
    records = frozen_records(statement)
    from_records = exact_sum(records, "total_amount")
    from_lines = exact_sum(
        statement.lines.filter(kind=StatementLine.Kind.USAGE), "amount_unrounded"
    )
    if from_lines != from_records:
        problems["lines"] = {"lines": str(from_lines), "records": str(from_records)}
    tz = statement.organization.tz
    first = local_day(statement.period_start, tz)
    last = local_day(statement.period_end - timedelta(microseconds=1), tz)
    rollup = exact_sums(
        DailyUsage.objects.filter(
            organization_id=statement.organization_id, day__gte=first, day__lte=last
        ),
        ["day", "product_id"],
        "cost",
    )
    start = datetime.combine(first, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    raw: dict = defaultdict(lambda: ZERO)
    for occurred_at, product_id, total in (
        counted(
            BillingRecord.objects.filter(
                organization_id=statement.organization_id,
                occurred_at__gte=start,
                occurred_at__lt=end,
            )
        )
        .values_list("occurred_at", "product_id", "total_amount")
        .iterator(5000)
    ):
        raw[(local_day(occurred_at, tz), product_id)] += total
    days = {
        f"{day}/{product_id}": {"rollup": str(rollup.get((day, product_id), ZERO)),
                                "records": str(raw.get((day, product_id), ZERO))}
        for day, product_id in sorted({*rollup, *raw})
        if rollup.get((day, product_id), ZERO) != raw.get((day, product_id), ZERO)
    }  # fmt: skip
    if days:
        problems["rollup"] = days
    return problems


# --- the close ------------------------------------------------------------------------------

STEPS = ["freeze", "build", "check", "push", "finalize", "notify"]
STAMPS = {"freeze": "frozen_at", "build": "built_at", "check": "checked_at",
          "push": "pushed_at", "finalize": "finalized_at", "notify": "notified_at"}  # fmt: skip


def close_period(*, organization: Organization, period_start: datetime, period_end: datetime,
                 now: datetime | None = None, until: str | None = None) -> Statement:  # fmt: skip
    """Closes one period of one organisation: each step not yet stamped runs, under the
    organisation's lock, and is stamped in the same transaction, so a rerun (or a second
    worker) resumes after the last step done and never does one twice. ``until`` stops
    after that step (how a crash between two steps is reproduced). Returns the statement:
    final, or stopped as ``mismatch``. Raises PeriodNotEnded."""
    now = now or timezone.now()
    if period_end > now:
        raise PeriodNotEnded(details={"period_end": period_end.isoformat()})
    earlier = (
        Statement.objects.filter(organization=organization, period_start__lt=period_start)
        .exclude(status=Statement.Status.FINAL)
        .order_by("period_start")
        .first()
    )
    if earlier is not None:
        # Late usage and refunds are carried in order: an earlier close comes first.
        raise EarlierPeriodOpen(details={"period_start": earlier.period_start.isoformat()})
    from apps.core import metrics

    statement = _open(organization, period_start, period_end)
    try:
        for step in STEPS:
            statement = _run_step(statement.pk, step, now)
            if statement.status == Statement.Status.MISMATCH or step == until:
                break
    except Exception:
        metrics.CLOSE_RUNS.labels("error").inc()
        raise
    metrics.CLOSE_RUNS.labels(statement.status).inc()
    _last_run(statement)
    return statement


LAST_RUN_KEY = "close:last-run"


def _last_run(statement: Statement) -> None:
    """The last close run, for the health report and the metrics."""
    from django.core.cache import cache

    try:
        cache.set(LAST_RUN_KEY, {"at": timezone.now().isoformat(), "statement": statement.pk,
                                 "status": statement.status}, None)  # fmt: skip
    except Exception:  # noqa: BLE001 - the health report then reads the statements
        logger.warning("Could not note the close run", exc_info=True)


def _open(organization, period_start, period_end) -> Statement:
    from apps.customers.billing import lock_organization

    with transaction.atomic():
        organization = lock_organization(organization.pk)
        as_it_was = organization_as_of(organization, period_end - timedelta(microseconds=1))
        statement, _ = Statement.objects.get_or_create(
            organization=organization,
            period_start=period_start,
            defaults={"period_end": period_end, "currency": organization.currency,
                      "plan_id": as_it_was.plan_id},
        )  # fmt: skip
    return statement


def organization_as_of(organization: Organization, instant: datetime):
    """The organisation as its audit history has it at ``instant`` (its plan and
    subscription status then, not after a change at renewal); itself without history."""
    try:
        return organization.history.as_of(instant)
    except Organization.DoesNotExist:
        return organization


def _run_step(statement_id: int, step: str, now: datetime) -> Statement:
    from apps.customers.billing import lock_organization

    if step == "check":
        return _check(statement_id, now)
    with transaction.atomic():
        statement = Statement.objects.select_related("organization", "plan").get(pk=statement_id)
        lock_organization(statement.organization_id)
        statement.refresh_from_db()
        if (
            getattr(statement, STAMPS[step]) is not None
            or statement.status == Statement.Status.MISMATCH
        ):
            return statement
        if step == "freeze":
            try:
                period_lock.exclusive(statement.organization_id)
            except period_lock.Busy:
                waited = settings.STATEMENT_FREEZE_WAIT_SECONDS
                raise WritersInFlight(details={"waited_seconds": waited}) from None
            statement.frozen_at = now
        elif step == "build":
            _build(statement)
        elif step == "push":
            _push(statement)
        elif step == "finalize":
            statement.status = Statement.Status.FINAL
        elif step == "notify":
            # Stamped by the email task once sent; a second enqueue finds it stamped.
            transaction.on_commit(lambda: _notify_soon(statement.pk))
            return statement
        setattr(statement, STAMPS[step], getattr(statement, STAMPS[step]) or now)
        statement.save()
    return statement


def mark_notified(statement_id: int) -> bool:
    """Stamps the email as sent, once; False when it already was."""
    with transaction.atomic():
        statement = Statement.objects.select_for_update().get(pk=statement_id)
        if statement.notified_at is not None:
            return False
        statement.notified_at = timezone.now()
        statement.save(update_fields=["notified_at"])
    return True


def _check(statement_id: int, now: datetime) -> Statement:
    from apps.customers.billing import lock_organization

    statement = Statement.objects.select_related("organization").get(pk=statement_id)
    if statement.checked_at is not None or statement.status == Statement.Status.FINAL:
        return statement
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic():
        if snapshot:
            # The rollup and the records read in one snapshot: an event recorded meanwhile
            # is on both sides or on neither. (Inside a caller's transaction, its own.)
            connection.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        problems = cross_check(statement)
    with transaction.atomic():
        lock_organization(statement.organization_id)
        statement.refresh_from_db()
        if statement.checked_at is not None:
            return statement
        if problems:
            statement.status, statement.mismatch = Statement.Status.MISMATCH, problems
            statement.save(update_fields=["status", "mismatch"])
            logger.error("Close of statement %s stopped: %s", statement.pk, problems)
            transaction.on_commit(lambda: _alert_finance(statement.pk))
            return statement
        statement.checked_at, statement.mismatch = now, {}
        statement.save(update_fields=["checked_at", "mismatch"])
    return statement


def rerun(statement: Statement, *, now: datetime | None = None) -> Statement:
    """A stopped close, run again (after the records or the rollup were put right): the
    lines of the stopped build are dropped and built again from the records as they now
    stand (nothing of them went out: a stopped close pushes and sends nothing), then the
    check, the push and the rest run as for any close. The freeze stays."""
    from apps.customers.billing import lock_organization

    with transaction.atomic():
        lock_organization(statement.organization_id)
        stopped = Statement.objects.filter(
            pk=statement.pk, status=Statement.Status.MISMATCH, pushed_at__isnull=True
        )
        if stopped.exists():
            StatementLine.discard_stopped_build(statement.pk)
            stopped.update(status=Statement.Status.OPEN, built_at=None, checked_at=None)
    return close_period(organization=statement.organization, period_start=statement.period_start,
                        period_end=statement.period_end, now=now)  # fmt: skip


def _build(statement: Statement) -> None:
    previous = (
        Statement.objects.filter(
            organization_id=statement.organization_id,
            status=Statement.Status.FINAL,
            period_start__lt=statement.period_start,
        )
        .order_by("-period_start")
        .first()
    )
    lines = draft(statement, previous).lines
    StatementLine.objects.bulk_create(
        [StatementLine(statement=statement, position=i, **line) for i, line in enumerate(lines)]
    )
    K = StatementLine.Kind

    def total(*kinds) -> Decimal:
        return sum((line["amount"] for line in lines if line["kind"] in kinds), ZERO)

    statement.usage_total = total(K.USAGE)
    statement.unrounded_usage = sum(
        (line["amount_unrounded"] for line in lines if line["kind"] == K.USAGE), ZERO
    )
    statement.rounding_difference = statement.unrounded_usage - statement.usage_total
    statement.base_fee = total(K.BASE_FEE)
    statement.minimums = total(K.MINIMUM)
    statement.credits_applied = -total(K.CREDITS)
    statement.wallet_paid = -total(K.WALLET)
    statement.refunds = -total(K.REFUND)
    statement.adjustments = total(K.ADJUSTMENT, K.CREDIT_NOTE, K.VOLUME_CREDIT)
    statement.total_due = sum((line["amount"] for line in lines), ZERO)


def _push(statement: Statement) -> None:
    """The postpaid part reaches Stripe one way, never two: where the subscription carries
    metered prices, the meters already have the usage (``stripe_usage``, made sure of here);
    otherwise one invoice item for the usage charges and adjustments, created with the
    statement as its idempotency key (a retry is answered with the first item)."""
    import stripe

    from apps.customers import billing
    from apps.usage import stripe_usage

    if not stripe_gateway.enabled():
        statement.push_method = "none"
        return
    customer = billing.customer_of(statement.organization)
    if customer is None:
        statement.push_method = "none"
        return
    subscription = billing.current_subscription(statement.organization)
    metered = set(billing.metered_price_ids(statement.currency))
    items = billing.subscription_items(subscription.stripe_data) if subscription else []
    if metered & {item["price"]["id"] for item in items}:
        products = {p.pk: p for p in Product.objects.exclude(stripe_meter_event_name="")}
        run = stripe_usage.RunReport()
        stripe_usage.report_organization(
            statement.organization_id, customer.id, products, now=timezone.now(), run=run
        )
        statement.push_method = "meters"
        return
    # Everything the portal adds to the invoice: usage net of what credits, the wallet
    # and refunds covered, adjustments, credit notes, volume credits and minimums (the
    # base fee is the subscription's own price on Stripe).
    due = statement.total_due - statement.base_fee
    if due <= 0:
        statement.push_method = "none"
        return
    from apps.pricing.cost_engine import to_minor_units

    key = stripe_gateway.api_key()
    # Stripe keeps an idempotency key for a day: a retry later than that finds the item
    # by the statement it names instead of creating a second one.
    for existing in stripe.InvoiceItem.list(api_key=key, customer=customer.id,
                                            limit=100).auto_paging_iter():  # fmt: skip
        if (existing.get("metadata") or {}).get("statement") == str(statement.pk):
            statement.push_method, statement.stripe_invoice_item_id = "invoice_item", existing["id"]
            return
    item = stripe.InvoiceItem.create(
        api_key=key,
        customer=customer.id,
        amount=to_minor_units(due, statement.currency),
        currency=statement.currency.lower(),
        description=f"Usage {statement.period_start:%Y-%m-%d} to {statement.period_end:%Y-%m-%d}",
        metadata={"statement": str(statement.pk), "organization_id": statement.organization.slug},
        idempotency_key=f"bp-statement-{statement.pk}",
    )
    statement.push_method, statement.stripe_invoice_item_id = "invoice_item", item["id"]


def _notify_soon(statement_id: int) -> None:
    from celery import current_app

    try:  # by the task's name: tasks call the close, never the reverse
        current_app.tasks["apps.usage.tasks.send_statement"].delay(statement_id)
    except Exception:  # eager (in-process) and failed: not stamped, the next close retries
        logger.warning("Statement %s email failed; the next run of the close retries it",
                       statement_id)  # fmt: skip


def _alert_finance(statement_id: int) -> None:
    from django.conf import settings
    from django.core.mail import mail_admins

    statement = Statement.objects.select_related("organization").get(pk=statement_id)
    try:
        mail_admins(
            f"Close stopped: {statement.organization.name} {statement.period_start:%Y-%m}",
            "The statement's records and the rollup disagree; nothing was sent to the "
            f"customer or to Stripe.\n\n{statement.mismatch}\n\n"
            f"Admin: statement {statement.pk}, action 'Re-run the close'.",
            fail_silently=not settings.DEBUG,
        )
    except Exception:  # noqa: BLE001 - the statement's status says it anyway
        logger.exception("Could not email finance about statement %s", statement_id)


# --- what is due, and the email ---------------------------------------------------------------


def periods_due(now: datetime | None = None, *, look_back: int = 3):
    """(organisation, start, end) of every billing period that ended more than
    ``STATEMENT_GRACE_HOURS`` ago without a final statement, oldest first (a close runs
    after the earlier ones). Statement periods follow one another without a gap or an
    overlap: each begins where the organisation's last statement ended (the first, at most
    ``look_back`` periods back and not before the organisation), and ends where its
    billing period ends (``statement_period``)."""
    from django.conf import settings

    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.STATEMENT_GRACE_HOURS)
    due = []
    for organization in Organization.objects.all():
        made = Statement.objects.filter(organization=organization).order_by("period_start")
        due += [(organization.pk, statement.period_start, statement.period_end)
                for statement in made.exclude(status=Statement.Status.FINAL)
                if statement.period_end <= cutoff]  # fmt: skip
        last = made.last()
        start = last.period_end if last else first_period_start(organization, cutoff, look_back)
        while True:
            start, end = statement_period(organization, start)
            if end > cutoff:
                break
            due.append((organization.pk, start, end))
            start = end
    return sorted(due, key=lambda item: (item[0], item[1]))


def first_period_start(organization: Organization, cutoff: datetime, look_back: int):
    """Where an organisation's first statement begins: in the period (as the organisation
    had its periods then) holding the instant ``look_back`` months before ``cutoff``, or
    the one it was created in if later."""
    earliest = max(cutoff - timedelta(days=31 * look_back), organization.created_at)
    start, _ = organization_as_of(organization, earliest).period_bounds(earliest)
    return start


def statement_period(organization: Organization, start: datetime) -> tuple[datetime, datetime]:
    """The statement period beginning at ``start``: to the end of the billing period that
    holds it (a calendar month, or a month of the subscription's billing cycle, as the
    organisation had then), cut where a period of a new billing anchor begins (a
    subscription that started, or ended, inside it)."""
    then = organization_as_of(organization, start)
    _, end = then.period_bounds(start)
    last_instant = end - timedelta(microseconds=1)
    later = organization_as_of(organization, min(last_instant, timezone.now()))
    if later.billing_anchor != then.billing_anchor:
        new_start, new_end = later.period_bounds(last_instant)
        if start < new_start < end:
            end = new_start
        elif new_start <= start < new_end:
            end = new_end
    return start, end


def statement_email(statement_id: int):
    """The statement as an email to the billing contact: an HTML summary with a chart of
    usage by product (inline SVG), the lines as a CSV attachment."""
    import csv
    import io

    from django.conf import settings
    from django.core.mail import EmailMultiAlternatives
    from django.template.loader import render_to_string

    from apps.core import charts
    from apps.core.csv_stream import safe_cell
    from apps.customers.templatetags.billing import money

    statement = Statement.objects.select_related("organization", "plan").get(pk=statement_id)
    lines = list(statement.lines.select_related("product"))
    usage = [line for line in lines if line.kind == StatementLine.Kind.USAGE and line.amount]
    by_product: dict = defaultdict(lambda: ZERO)
    for line in usage:
        by_product[line.product.name] += line.amount
    chart = charts.horizontal_bars(
        sorted(by_product.items(), key=lambda item: -item[1]),
        fmt=lambda value: money(value, statement.currency),
        label="Usage by product",
    )
    tz = statement.organization.tz
    first = local_day(statement.period_start, tz)
    last = local_day(statement.period_end - timedelta(microseconds=1), tz)
    period = f"{first:%b %-d, %Y} – {last:%b %-d, %Y}"
    context = {"statement": statement, "lines": lines, "chart": chart, "period": period}
    text = render_to_string("billing/email/statement.txt", context)
    html = render_to_string("billing/email/statement.html", context)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["position", "kind", "description", "product_id", "dimension", "quantity",
                     "included_quantity", "billable_quantity", "unit_price", "amount_unrounded",
                     "amount", "currency"])  # fmt: skip
    for line in lines:
        cells = [line.position, line.kind, line.description,
                 line.product.code if line.product else "", line.dimension, line.quantity,
                 line.included_quantity, line.billable_quantity, line.unit_price,
                 line.amount_unrounded, line.amount, statement.currency]  # fmt: skip
        writer.writerow([safe_cell(value) for value in cells])
    message = EmailMultiAlternatives(
        subject=f"Your statement for {period}: {money(statement.total_due, statement.currency)}",
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[statement.organization.billing_email],
    )
    message.attach_alternative(html, "text/html")
    name = f"statement-{statement.organization.slug}-{statement.period_start:%Y-%m-%d}.csv"
    message.attach(name, buffer.getvalue(), "text/csv")
    return message
