"""Ingestion: price, pay for and store usage events, one or a thousand at a time.

A single post is a batch of one: one code path. Per organisation and batch it

1. answers events whose idempotency key is known (duplicate, or 409 conflict when the
   content differs) and checks what needs no lock (product, dimensions, service type);
2. in one transaction locks what every event will change, always in the same order —
   period counters (by key), credit grants (by expiry), the wallet — so two batches can
   never deadlock and two events can never price the same position;
3. prices the events in order in memory (tiers, allowances, inclusions move with them) and
   picks how each is paid: included in the plan, credits, wallet, or charged later;
4. writes events, billing records, billing events, ledger entries, counters and the daily
   rollup with set-based statements.

A concurrent twin of an event (same key, other request) makes the insert fail on the unique
key: the whole transaction rolls back and the batch is run once more, when the twin is seen
as the duplicate it is. Nothing is ever recorded or charged twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from apps.budgets.enforcement import Reservations
from apps.core import hot_rows, period_lock, pg_array, prepared
from apps.core.errors import PortalError
from apps.core.rows import link, unsaved
from apps.customers.models import ApiKey, Organization
from apps.customers.wallets import Funds
from apps.pricing import selectors as pricing
from apps.pricing.cost_engine import format_quantity
from apps.pricing.errors import InvalidUsage, PriceNotConfigured, ProductNotFound
from apps.pricing.models import BillingMethod, Product
from apps.pricing.periods import MONTH, local_day
from apps.usage import bulk
from apps.usage.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InsufficientWalletBalance,
    NotIncludedInSubscription,
    SubscriptionPastDue,
)
from apps.usage.models import (
    BillingEvent,
    BillingRecord,
    BillingStatus,
    DailyUsage,
    UsageCounter,
    UsageEvent,
)
from apps.usage.selectors import (
    inclusion_counter_key,
    price_counter_key,
    price_depends_on_period,
)

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE
PAID_AT_ONCE = {
    BillingMethod.SUBSCRIPTION_INCLUDED: BillingStatus.COMPLETED,
    BillingMethod.CREDIT_CONSUMPTION: BillingStatus.COMPLETED,
    BillingMethod.WALLET_DEDUCTION: BillingStatus.COMPLETED,
    BillingMethod.PAYMENT_CHARGE: BillingStatus.PENDING,
}


@dataclass(frozen=True)
class EventInput:
    """One event as a client described it, already checked for shape (``api/parsing``)."""

    idempotency_key: str
    product_id: str
    fingerprint: str
    usage_amount: Decimal | None = None
    dimensions: dict[str, Decimal] | None = None
    usage_details: dict = field(default_factory=dict)
    service_type: str | None = None
    user_id: str = ""
    session_id: str = ""
    billing_method: str | None = None
    occurred_at: datetime | None = None


@dataclass
class Outcome:
    ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"

    status: str
    record: BillingRecord | None = None
    error: PortalError | None = None
    # The budgets the event counted against, as they stand after it: (budget, spent).
    budgets: list = field(default_factory=list)
    budget_periods: list = field(default_factory=list, repr=False)


def fingerprint(content: dict) -> str:
    """SHA-256 of an event's canonical content (sorted keys, numbers as normalized text)."""

    def normal(value):
        if isinstance(value, Decimal | int) and not isinstance(value, bool):
            return format_quantity(Decimal(value))
        if isinstance(value, dict):
            return {key: normal(item) for key, item in value.items()}
        if isinstance(value, list):
            return [normal(item) for item in value]
        return value

    text = json.dumps(normal(content), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def new_billing_id() -> str:
    return f"bill_{secrets.token_hex(12)}"


@dataclass
class _Candidate:
    index: int
    event: EventInput
    product: Product
    sheet: pricing.PriceSheet
    quantities: dict[str, Decimal]
    occurred_at: datetime
    price_keys: dict[str, tuple[str, datetime, datetime]]  # dimension -> counter
    inclusion_key: tuple[str, datetime, datetime] | None


def ingest(
    *,
    organization: Organization,
    events: list[EventInput],
    api_key: ApiKey | None = None,
    actor: str = "system",
) -> list[Outcome]:
    """Records ``events`` for ``organization``; one outcome per event, in order.

    Guarantees: an accepted event is stored with its billing record, ledger entries and
    rollup in one transaction; a known key is a duplicate and changes nothing; a rejected
    event (unknown product, bad dimensions, no price, method that cannot pay) changes
    nothing and does not consume its key.
    """
    try:
        outcomes = _ingest_once(organization, events, api_key, actor, retry=False)
    except IntegrityError:
        # A concurrent request stored one of these keys first; now it is a duplicate.
        outcomes = _ingest_once(organization, events, api_key, actor, retry=True)
    except OperationalError as error:
        # Every lock is taken in one global order, so this should not happen; if it does,
        # the transaction was rolled back whole and running it again is safe.
        if not _is_deadlock(error):
            raise
        logger.warning("Ingestion deadlocked; running the batch once more", exc_info=True)
        outcomes = _ingest_once(organization, events, api_key, actor, retry=True)
    if (
        len(events) == 1
        and outcomes[0].status == Outcome.REJECTED
        and not isinstance(outcomes[0].error, IdempotencyConflict)
        and UsageEvent.objects.filter(
            organization=organization, idempotency_key=events[0].idempotency_key
        ).exists()
    ):
        # A single event is decided before its key is looked up: refused, it may be the
        # retry of one already stored (the budget filled up since), and that is its answer.
        outcomes = _ingest_once(organization, events, api_key, actor, retry=True)
    _count(outcomes)
    return outcomes


def _is_deadlock(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == DEADLOCK_DETECTED


# Refusals that are a budget's or a quota's (counted apart from malformed events).
SPENDING_REFUSALS = {"budget_exceeded", "insufficient_wallet_balance", "insufficient_credits",
                     "subscription_past_due", "not_included_in_subscription"}  # fmt: skip


def _count(outcomes) -> None:
    from apps.core import metrics

    for outcome in outcomes:
        reason = outcome.error.code if outcome.status == Outcome.REJECTED and outcome.error else ""
        metrics.USAGE_EVENTS.labels(outcome.status, reason).inc()
        if reason in SPENDING_REFUSALS:
            metrics.BUDGET_REFUSALS.labels(reason).inc()


def _ingest_once(organization, events, api_key, actor, *, retry: bool) -> Outcomes:
    now = timezone.now()
    outcomes: list[Outcome | None] = [None] * len(events)
    # A single event goes straight to the insert: a known key fails it on the unique
    # constraint and the retry (``ingest``) then finds it here. A batch looks first, since a
    # retried batch would otherwise roll back every time.
    known = {}
    if len(events) > 1 or retry:
        known = _known_keys(organization, {event.idempotency_key for event in events})
    duplicate_keys: dict[int, str] = {}
    seen_in_batch: dict[str, str] = {}
    fresh: list[tuple[int, EventInput]] = []
    for index, event in enumerate(events):
        key = event.idempotency_key
        stored = known.get(key, seen_in_batch.get(key))
        if stored is None:
            seen_in_batch[key] = event.fingerprint
            fresh.append((index, event))
        elif stored == event.fingerprint:
            duplicate_keys[index] = key
        else:
            outcomes[index] = Outcome(
                Outcome.REJECTED,
                error=IdempotencyConflict(details={"idempotency_key": key}),
            )

    plan = pricing.effective_plan(organization.plan)
    products = pricing.active_products_by_code({event.product_id for _, event in fresh})
    sheets: dict[int, pricing.PriceSheet] = {}
    candidates = []
    for index, event in fresh:
        try:
            candidates.append(_prepare(organization, plan, index, event, now, products, sheets))
        except PortalError as error:
            outcomes[index] = Outcome(Outcome.REJECTED, error=error)

    balances = (None, None)
    if candidates:
        accepted, balances = _price_pay_and_store(organization, candidates, api_key, actor, now)
        for index, result in accepted.items():
            outcomes[index] = result

    if duplicate_keys:
        records = {
            record.event.idempotency_key: record
            for record in BillingRecord.objects.select_related("event", "product").filter(
                organization=organization, event__idempotency_key__in=duplicate_keys.values()
            )
        }
        for index, key in duplicate_keys.items():
            record = records.get(key)
            if record is None:  # its twin in this batch was rejected
                outcomes[index] = Outcome(
                    Outcome.REJECTED,
                    error=IdempotencyConflict(
                        "An earlier event of this batch with this key was rejected.",
                        details={"idempotency_key": key},
                    ),
                )
            else:
                outcomes[index] = Outcome(Outcome.DUPLICATE, record=record)
    result = Outcomes(outcomes)
    result.wallet_balance, result.credit_balance = balances
    return result


def _known_keys(organization: Organization, keys: set[str]) -> dict[str, str]:
    """The fingerprint stored under each of ``keys`` that is known. On PostgreSQL the keys
    go as one array parameter: a thousand-key ``__in`` costs more to build than to run."""
    if connection.vendor != "postgresql":
        return dict(
            UsageEvent.objects.filter(
                organization=organization, idempotency_key__in=keys
            ).values_list("idempotency_key", "fingerprint")
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idempotency_key, fingerprint FROM usage_usageevent"
            " WHERE organization_id = %s AND idempotency_key = ANY(%s::varchar[])",
            [organization.pk, pg_array.text(keys)],
        )
        return dict(cursor.fetchall())


def _prepare(organization, plan, index, event: EventInput, now, products, sheets) -> _Candidate:
    product = products.get(event.product_id)
    if product is None:
        raise ProductNotFound(details={"product_id": event.product_id})
    try:
        quantities = pricing.resolve_quantities(
            product=product,
            usage_amount=event.usage_amount,
            dimensions=event.dimensions,
            usage_details=event.usage_details,
        )
    except ValueError as error:
        raise InvalidUsage(error.args[0]) from None
    if event.service_type and event.service_type != product.service_type_id:
        raise InvalidUsage(
            {"service_type": f"{product.code} is a {product.service_type_id} product."}
        )
    if product.pk not in sheets:
        sheets[product.pk] = pricing.price_sheet(plan=plan, product=product)
    sheet = sheets[product.pk]
    occurred_at = event.occurred_at or now
    month_start, month_end = organization.period_bounds(occurred_at, MONTH)
    price_keys = {}
    for dimension in quantities:
        version = sheet.rule_at(dimension, occurred_at)
        if version is None:
            raise PriceNotConfigured(
                f"No price for {product.code} ({dimension}) on this plan.",
                details={"product_id": product.code, "dimension": dimension},
            )
        if price_depends_on_period(version.terms):
            # Keep count of what the period used, under a lock.
            key = price_counter_key(product.pk, dimension)
            price_keys[dimension] = (key, month_start, month_end)
    inclusion_key = None
    if sheet.inclusion is not None:
        start, end = organization.period_bounds(occurred_at, sheet.inclusion.period)
        inclusion_key = (inclusion_counter_key(sheet.inclusion.scope), start, end)
    return _Candidate(
        index, event, product, sheet, quantities, occurred_at, price_keys, inclusion_key
    )


def _standing(organization: Organization, at: datetime, counter_keys: list) -> tuple:
    """(wallet balance, overdraft limit, usable credits, has active budgets, the quantity of
    each counter in ``counter_keys`` or None), read without row locks, in one round trip:
    only to know what is worth locking. Money is only ever taken, budgets only ever
    checked, and counters only ever moved under the locks."""
    org = organization.pk
    counters = "".join(
        ", (SELECT quantity FROM usage_usagecounter"
        " WHERE organization_id = %s AND key = %s AND period_start = %s)"
        for _ in counter_keys
    )
    # The other apps' columns as those apps word them (their tables are theirs).
    funds_sql, funds_params = Funds.standing_sql(org, at)
    budgets_sql, budgets_params = Reservations.active_sql(org)
    params = [*funds_params, *budgets_params]
    for key, start in counter_keys:
        params += [org, key, start]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {funds_sql}, {budgets_sql}" + counters, params)
        balance, overdraft, credits, has_budgets, *quantities = cursor.fetchone()
    return (
        _decimal(balance),
        _decimal(overdraft),
        _decimal(credits),
        bool(has_budgets),
        [None if q is None else _decimal(q) for q in quantities],
    )


def _snapshot_sql(organization, at, wanted, instants) -> tuple[tuple[str, list], list, list]:
    """One SELECT's columns (without a lock, on PostgreSQL) of what a decision without the
    locks starts from: the counters, the active budgets and their periods, the wallet, the
    usable credit grants."""
    org = organization.pk
    counter_starts = sorted({start for _, start in wanted})
    counters_sql = (
        "(SELECT json_agg(json_build_array(c.id, c.key,"
        " array_position(%s::timestamptz[], c.period_start), c.quantity::text))"
        " FROM usage_usagecounter c WHERE c.organization_id = %s AND c.key = ANY(%s::text[])"
        " AND c.period_start = ANY(%s::timestamptz[]))"
    )
    starts_text = pg_array.text(counter_starts)
    params = [starts_text, org, pg_array.text(sorted({key for key, _ in wanted})), starts_text]
    starts = Reservations.candidate_starts(organization, instants)
    budgets_sql, budgets_params = Reservations.snapshot_sql(org, starts)
    funds_sql, funds_params = Funds.snapshot_sql(org, at)
    sql = f"{counters_sql}, {budgets_sql}, {funds_sql}"
    return (sql, params + budgets_params + funds_params), starts, counter_starts


def _standing_from_snapshot(extra, identities, counter_starts) -> tuple:
    """What ``_standing`` answers, from the snapshot's columns."""
    counter_rows, budget_rows, _, wallet_row, grant_rows = extra
    balance = Decimal(wallet_row[1]) if wallet_row else ZERO
    overdraft = Decimal(wallet_row[2]) if wallet_row else ZERO
    credits = sum((Decimal(remaining) for _, remaining, _ in grant_rows or ()), ZERO)
    quantities = {
        (key, counter_starts[index - 1]): Decimal(quantity)
        for _, key, index, quantity in counter_rows or ()
    }
    used = [quantities.get(identity) for identity in identities]
    return balance, overdraft, credits, bool(budget_rows), used


def _counters_from_snapshot(organization, wanted, rows, counter_starts) -> dict | None:
    """The counters as read without a lock; None if one is missing (only the locked path
    creates counters)."""
    counters = {}
    for id, key, index, quantity in rows or ():
        start = counter_starts[index - 1]
        if (key, start) in wanted:
            counters[(key, start)] = unsaved(
                UsageCounter,
                id=id, organization=organization, key=key, period_start=start,
                period_end=wanted[(key, start)][2], quantity=Decimal(quantity),
            )  # fmt: skip
    return counters if len(counters) == len(wanted) else None


def _decimal(value) -> Decimal:
    # PostgreSQL answers Decimal; SQLite (the embedded default) may answer a float.
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def _lock_counters(organization, wanted: dict) -> dict:
    """Locks the counters in ``wanted`` in key order, then creates the missing ones."""

    def select():
        counters = UsageCounter.objects.filter(
            organization=organization,
            key__in={key for key, _ in wanted},
            period_start__in={start for _, start in wanted},
        ).order_by("key", "period_start")
        return {(counter.key, counter.period_start): counter
                for counter in counters.select_for_update()}  # fmt: skip

    counters = select()
    missing = sorted(key for key in wanted if key not in counters)
    if missing:
        UsageCounter.objects.bulk_create(
            [
                UsageCounter(organization=organization, key=k, period_start=s, period_end=e)
                for k, s, e in (wanted[key] for key in missing)
            ],
            ignore_conflicts=True,
        )
        counters = select()
    return counters


class Outcomes(list):
    """The outcomes, plus the balances the organisation was left with."""

    wallet_balance: Decimal | None = None
    credit_balance: Decimal | None = None


class _Stale(Exception):
    """What was read without a lock no longer holds: roll back and decide under the locks."""


def _price_pay_and_store(
    organization, candidates, api_key, actor, now
) -> tuple[dict[int, Outcome], tuple[Decimal, Decimal]]:
    """Prices, pays for and stores ``candidates``. On PostgreSQL it first reads what they
    depend on without a lock, decides in memory, writes the events and only then takes the
    hot rows (counters, budget periods, credit grants, wallet, the rollup), each in one
    statement that checks what the decision relied on: the rows are held only for those
    statements and the commit. If anything moved so that a decision could differ, or an
    event would be refused, the transaction is rolled back and the batch decided again
    with every hot row locked first."""
    if connection.vendor == "postgresql":
        try:
            return _store(organization, candidates, api_key, actor, now, optimistic=True)
        except _Stale:
            from apps.core import metrics

            metrics.DECIDED_AGAIN.inc()
    return _store(organization, candidates, api_key, actor, now, optimistic=False)


def _store(
    organization, candidates, api_key, actor, now, *, optimistic: bool
) -> tuple[dict[int, Outcome], tuple[Decimal, Decimal]]:
    # Counters are needed where the price depends on the position in the period (tiers,
    # allowances, packages) and for inclusions not yet used up; a used-up inclusion only
    # grows until its period ends, so it is read once, without a lock.
    wanted = {}
    for candidate in candidates:
        for key in candidate.price_keys.values():
            wanted[(key[0], key[1])] = key
        if candidate.inclusion_key:
            key = candidate.inclusion_key
            wanted[(key[0], key[1])] = key
    used_up: dict[tuple[str, datetime], Decimal] = {}
    inclusion_keys = {c.inclusion_key[:2]: c.sheet.inclusion.quantity for c in candidates
                      if c.inclusion_key}  # fmt: skip
    identities = list(inclusion_keys)
    # A single event decided without the locks writes only by raw statements: its
    # transaction can be a short one (BEGIN, the period lock and the snapshot in one round
    # trip, then the hot statement, then COMMIT).
    short = optimistic and len(candidates) == 1 and hot_rows.can_be_short()
    with hot_rows.short() if short else transaction.atomic() as opened:
        on_commit = opened.on_commit if short else transaction.on_commit
        instants = {c.occurred_at for c in candidates}
        # The period lock first: what the close reads is stamped once it is held, and a
        # budget opened meanwhile is seen by the queries after it.
        if optimistic:
            (sql, params), starts, counter_starts = _snapshot_sql(
                organization, now, wanted, instants
            )
            if short:
                extra = opened.begin(
                    [
                        prepared.Statement(*period_lock.shared_statement(organization.pk), 1),
                        prepared.statement("SELECT " + sql, params),
                    ]
                )
                stamp = timezone.now()
            else:
                stamp = period_lock.stamp(organization.pk)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT " + sql, params)
                    extra = cursor.fetchone()
            balance, overdraft, credits, has_budgets, used = _standing_from_snapshot(
                extra, identities, counter_starts
            )
        else:
            stamp = period_lock.stamp(organization.pk)
            balance, overdraft, credits, has_budgets, used = _standing(
                organization, now, identities
            )
        for identity, quantity in zip(identities, used, strict=True):
            if quantity is not None and quantity >= inclusion_keys[identity]:
                used_up[identity] = quantity
                wanted.pop(identity, None)
        funds_wanted = (
            balance + overdraft > 0
            or credits > 0
            or any(
                c.event.billing_method
                in (BillingMethod.WALLET_DEDUCTION, BillingMethod.CREDIT_CONSUMPTION)
                for c in candidates
            )
        )

        results: dict[int, Outcome] = {}
        counters, reservations, funds_read = {}, None, None
        if optimistic:
            counter_rows, budget_rows, period_rows, wallet_row, grant_rows = extra
            # A counter or budget period that does not exist yet is created under the
            # locks (the locked path takes the existing ones first, then inserts): an
            # insert here, before the hot rows, could wait on a writer that holds them.
            if wanted:
                counters = _counters_from_snapshot(
                    organization, wanted, counter_rows, counter_starts
                )
                if counters is None:
                    raise _Stale
            if has_budgets:
                reservations = Reservations.from_snapshot(
                    organization, instants, starts, budget_rows, period_rows
                )
                if reservations is None:
                    raise _Stale
            funds_read = Funds.from_snapshot(organization, wallet_row, grant_rows)
        else:
            counters = _lock_counters(organization, wanted) if wanted else {}
            if has_budgets:
                reservations = Reservations.lock(organization, instants)
        positions = {key: counter.quantity for key, counter in counters.items()}
        for identity, quantity in used_up.items():
            counters[identity] = UsageCounter(quantity=quantity)  # read-only stand-in
        funds = _LazyFunds(organization, now, enabled=funds_wanted, read=funds_read)
        changed_counters: set[tuple[str, datetime]] = set()

        events, records, priced = [], [], []
        quotes: dict[tuple, tuple] = {}  # shared by events priced alike (``_quote``)
        for candidate in candidates:
            try:
                record, touched, quote = _price_and_pay(
                    candidate,
                    counters,
                    changed_counters,
                    funds,
                    reservations,
                    api_key,
                    actor,
                    quotes,
                )
            except PortalError as error:
                if optimistic:
                    raise _Stale from None  # a refusal is decided under the locks
                results[candidate.index] = Outcome(Outcome.REJECTED, error=error)
                continue
            priced.append((candidate, quote))
            event = candidate.event
            events.append(
                unsaved(
                    UsageEvent,
                    organization=organization,
                    idempotency_key=event.idempotency_key,
                    fingerprint=event.fingerprint,
                    product=candidate.product,
                    service_type=candidate.product.service_type_id,
                    user_id=event.user_id,
                    session_id=event.session_id,
                    api_key=api_key,
                    quantity=record.usage_amount,
                    quantities={d: format_quantity(q) for d, q in candidate.quantities.items()},
                    usage_details=event.usage_details,
                    occurred_at=candidate.occurred_at,
                    received_at=now,
                )
            )
            record.organization = organization
            record.created_at = record.updated_at = stamp
            records.append(record)
            results[candidate.index] = Outcome(
                Outcome.ACCEPTED,
                record=record,
                budgets=[(budget, period.spent) for budget, period in touched],
                budget_periods=[(budget, period.spent, period) for budget, period in touched],
            )

        if events:
            billing_events = [
                unsaved(
                    BillingEvent,
                    record=record,
                    from_status="",
                    to_status=record.status,
                    billing_method=record.billing_method,
                    amount=record.total_amount,
                    actor=actor,
                    reason="usage recorded",
                    created_at=stamp,
                )
                for record in records
            ]
            hot = []  # (optimistic) the hot rows' parts, but the rollup
            if optimistic:
                if positions:
                    hot.append(_counters_part(counters, positions, priced))
                if reservations is not None:
                    hot.append(reservations.hot_part())
                if funds.locked:
                    hot.append(funds.hot_part())
                hot = [part for part in hot if part.ctes]
            if len(events) == 1 and hot:  # the hot rows and the event: one statement
                hot.append(bulk.single_event_part(events[0], records[0], billing_events[0]))
            elif len(events) == 1:  # with its rollup, in one statement
                bulk.insert_single_event(
                    events[0],
                    records[0],
                    billing_events[0],
                    also=daily_usage_upsert(organization, records),
                )
            else:
                # Written in one global order (by key), whatever the caller's order: twin
                # batches then meet on their first common key, and the later waits there
                # for the earlier instead of each holding a key the other needs.
                rows = sorted(
                    zip(events, records, billing_events, strict=True),
                    key=lambda row: row[0].idempotency_key,
                )
                events = [event for event, _, _ in rows]
                records = [record for _, record, _ in rows]
                billing_events = [billing_event for _, _, billing_event in rows]
                bulk.insert(UsageEvent, events)
                for event, record in zip(events, records, strict=True):
                    link(record, "event", event)
                bulk.insert(BillingRecord, records)
                for billing_event, record in zip(billing_events, records, strict=True):
                    link(billing_event, "record", record)
                bulk.insert(BillingEvent, billing_events)
                if not hot:
                    bump_daily_usage(organization, records)
            if optimistic:
                # The hot rows, last, in the lock order, in one statement, each checked;
                # the rollup after them.
                parts = [*hot, _rollup_part(organization, records)]
                cursor = opened.cursor if short else None
                if hot and not hot_rows.take(parts, prepare=len(events) == 1, cursor=cursor):
                    raise _Stale
                if reservations is not None:
                    _report_real_spent(results, reservations)
            else:
                funds.write()
                if reservations is not None:
                    reservations.write()
                if changed_counters:
                    UsageCounter.objects.bulk_update(
                        [counters[key] for key in changed_counters], ["quantity"]
                    )
            if reservations is not None and reservations.crossed:
                crossed = sorted(reservations.crossed)
                on_commit(lambda: _sweep_soon(crossed))
    if funds.locked:
        return results, (funds.wallet_balance, funds.credit_balance)
    return results, (balance, credits)


def _counters_part(counters: dict, positions: dict, priced: list) -> hot_rows.Part:
    """Moves the counters read without a lock by what the events added, in one UPDATE
    that locks them in key order. Its ``apply`` says whether every event's price stands at
    the positions the counters really held: they did not move, or pricing the events again
    from there gives the very same lines."""
    keys = sorted(positions)
    moved = {counters[key].pk: counters[key].quantity - positions[key] for key in keys}
    ids = [counters[key].pk for key in keys]
    cases = " ".join("WHEN %s THEN %s::numeric" for _ in ids)
    params = [*ids]
    for pk in ids:
        params += [pk, moved[pk]]
    ctes = [
        ("counters_locked", "SELECT id FROM usage_usagecounter WHERE id IN ("
         + ", ".join(["%s"] * len(ids)) + ") AND {after} ORDER BY key, period_start FOR UPDATE"),
        ("counters", f"UPDATE usage_usagecounter SET quantity = quantity + CASE id {cases} END"
         " WHERE id IN (SELECT id FROM counters_locked) RETURNING id, quantity"),
    ]  # fmt: skip

    def apply(rows) -> bool:
        after = {id: Decimal(quantity) for id, quantity in rows or ()}
        if len(after) != len(keys):
            return False  # a counter went: decide again
        real = {key: after[counters[key].pk] - moved[counters[key].pk] for key in keys}
        return real == {key: positions[key] for key in keys} or _same_price(counters, real, priced)

    return hot_rows.Part(
        ctes, params, "(SELECT json_agg(json_build_array(id, quantity::text)) FROM counters)",
        apply,
    )  # fmt: skip


def _rollup_part(organization: Organization, records: list) -> hot_rows.Part:
    """The daily rollup's upsert as the hot statement's last part."""
    sql, params = daily_usage_upsert(organization, records, after_hot_rows=True)
    return hot_rows.Part([("rollup", sql)], params, "(SELECT count(*) FROM rollup)", bool)


def _same_price(counters: dict, real: dict, priced: list) -> bool:
    """Whether the events priced again, in order, from the counters' real positions give
    the very lines they were priced with."""
    at = {key: real.get(key, counters[key].quantity) for key in counters}
    for candidate, quote in priced:
        again = pricing.quote_with_sheet(
            sheet=candidate.sheet,
            quantities=candidate.quantities,
            at=candidate.occurred_at,
            period_to_date={
                dimension: at[(key, start)]
                for dimension, (key, start, _) in candidate.price_keys.items()
            },
            included_used=at[candidate.inclusion_key[:2]] if candidate.inclusion_key else ZERO,
        )
        if _lines(again) != _lines(quote):
            return False
        for line in quote.breakdown.lines:  # (as ``_price_and_pay`` moves the counters)
            if line.dimension in candidate.price_keys:
                key, start, _ = candidate.price_keys[line.dimension]
                at[(key, start)] += line.quantity - line.included_quantity
        if candidate.inclusion_key and quote.breakdown.included_quantity:
            at[candidate.inclusion_key[:2]] += quote.breakdown.included_quantity
    return True


def _lines(quote) -> tuple:
    return (
        quote.total,
        quote.unit_price,
        quote.quantity,
        quote.breakdown.included_quantity,
        [(line.dimension, line.quantity, line.included_quantity, line.free_quantity,
          line.billable_quantity, line.unit_price, line.amount, line.pricing_model)
         for line in quote.breakdown.lines],
    )  # fmt: skip


def _report_real_spent(results: dict, reservations: Reservations) -> None:
    """Each accepted event's budgets as they really stood after it (others may have added
    to a period between the read and the lock)."""
    for outcome in results.values():
        outcome.budgets = [
            (budget, spent + reservations.shift.get((budget.pk, period.starts_at), ZERO))
            for budget, spent, period in outcome.budget_periods
        ]


def _sweep_soon(budget_ids: list[int]) -> None:
    """Alerts for budgets an accepted event pushed past a threshold, without waiting for
    the periodic sweep; a failure here only delays the alert to that sweep."""
    from apps.budgets.tasks import sweep_budgets

    try:
        sweep_budgets.delay(budget_ids=budget_ids)
    except Exception:
        logger.warning("Could not enqueue the budget sweep", exc_info=True)


class _LazyFunds:
    """The organisation's funds, locked the first time an event has something to pay and
    only if there is anything to take from (or a method that insists)."""

    def __init__(self, organization, at, *, enabled: bool, read=None) -> None:
        self.organization, self.at, self.enabled = organization, at, enabled
        self._read = read  # the funds as read without a lock, when already read
        self._funds: Funds | None = None

    @property
    def locked(self) -> bool:
        return self._funds is not None

    def _get(self) -> Funds | None:
        if self._funds is None and self.enabled:
            if self._read is not None:
                self._funds = self._read
            else:
                self._funds = Funds.lock(self.organization, at=self.at)
        return self._funds

    def take_credits(self, amount, **kwargs) -> bool:
        funds = self._get()
        return bool(funds and funds.take_credits(amount, **kwargs))

    def take_wallet(self, amount, **kwargs) -> bool:
        funds = self._get()
        return bool(funds and funds.take_wallet(amount, **kwargs))

    @property
    def credit_balance(self) -> Decimal:
        funds = self._get()
        return funds.credit_balance if funds else ZERO

    @property
    def wallet_balance(self) -> Decimal:
        funds = self._get()
        return funds.wallet_balance if funds else ZERO

    def write(self) -> None:
        if self._funds is not None:
            self._funds.write()

    def hot_part(self) -> hot_rows.Part:
        return self._funds.hot_part()


def _quote(candidate, counters, quotes: dict) -> tuple[pricing.Quote, list[dict]]:
    """The quote of one event at the counters' current position, and its breakdown as a
    record stores it. Events of a batch whose price depends on nothing that moves (no
    tier, package or allowance, no inclusion left to share) and that are alike (product,
    instant, quantities) share one quote: pricing is pure, and a batch is often a thousand
    of the same call."""
    period_to_date = {
        dimension: counters[(key, start)].quantity
        for dimension, (key, start, _) in candidate.price_keys.items()
    }  # dimensions priced the same wherever they fall need no count
    included_used = ZERO
    inclusion = candidate.sheet.inclusion
    if candidate.inclusion_key:
        included_used = counters[candidate.inclusion_key[:2]].quantity
    key = None
    if not period_to_date and (inclusion is None or included_used >= inclusion.quantity):
        # (str: quantities equal in value but written apart are stored as written)
        quantities = tuple((dimension, str(q)) for dimension, q in candidate.quantities.items())
        key = (candidate.product.pk, candidate.occurred_at, quantities)
        shared = quotes.get(key)
        if shared is not None:
            return shared
    quote = pricing.quote_with_sheet(
        sheet=candidate.sheet,
        quantities=candidate.quantities,
        at=candidate.occurred_at,
        period_to_date=period_to_date,
        included_used=included_used,
    )
    breakdown = [
        {
            "dimension": line.dimension,
            "quantity": format_quantity(line.quantity),
            "included_quantity": format_quantity(line.included_quantity),
            "free_quantity": format_quantity(line.free_quantity),
            "billable_quantity": format_quantity(line.billable_quantity),
            "unit_price": format_quantity(line.unit_price),
            "amount": format_quantity(line.amount),
            "pricing_model": line.pricing_model,
            "price_rule_id": quote.rule_ids[line.dimension],
        }
        for line in quote.breakdown.lines
    ]
    if key is not None:
        quotes[key] = (quote, breakdown)
    return quote, breakdown


def _price_and_pay(
    candidate, counters, changed, funds, reservations, api_key, actor, quotes
) -> tuple[BillingRecord, list]:
    """Prices one event at the counters' current position and takes its payment; moves the
    counters only if it is accepted (raises PortalError otherwise)."""
    quote, breakdown = _quote(candidate, counters, quotes)
    touched = []
    if reservations is not None:
        touched = reservations.check(
            quote.total,
            occurred_at=candidate.occurred_at,
            service_type=candidate.product.service_type_id,
            product_id=candidate.product.pk,
            api_key_id=api_key.pk if api_key else None,
        )
    billing_id = new_billing_id()
    method = _pay(quote.total, candidate.event.billing_method, funds, billing_id, actor)
    if reservations is not None:
        reservations.apply(touched, quote.total)

    for line in quote.breakdown.lines:
        if line.dimension in candidate.price_keys:
            key, start, _ = candidate.price_keys[line.dimension]
            counters[(key, start)].quantity += line.quantity - line.included_quantity
            changed.add((key, start))
    if candidate.inclusion_key and quote.breakdown.included_quantity:
        counters[candidate.inclusion_key[:2]].quantity += quote.breakdown.included_quantity
        changed.add(candidate.inclusion_key[:2])

    record = unsaved(
        BillingRecord,
        billing_id=billing_id,
        user_id=candidate.event.user_id,
        product=candidate.product,
        service_type=candidate.product.service_type_id,
        usage_amount=quote.quantity,
        included_quantity=quote.breakdown.included_quantity,
        unit_price=quote.unit_price,
        total_amount=quote.total,
        currency=quote.currency,
        billing_method=method,
        status=PAID_AT_ONCE[method],
        breakdown=breakdown,
        occurred_at=candidate.occurred_at,
    )
    return record, touched, quote


def _pay(total: Decimal, requested: str | None, funds: Funds, billing_id: str, actor) -> str:
    """Picks the billing method and takes the money: included (nothing to pay), then
    credits, then the wallet, then a charge on the period's invoice. A requested method is
    honoured or refused, never silently replaced."""
    if total == 0:
        return BillingMethod.SUBSCRIPTION_INCLUDED  # nothing to pay, whatever was asked
    details = {"amount": str(total)}
    if requested == BillingMethod.SUBSCRIPTION_INCLUDED:
        raise NotIncludedInSubscription(details=details)
    if requested in (None, BillingMethod.CREDIT_CONSUMPTION):
        if funds.take_credits(total, reference=billing_id, actor=actor):
            return BillingMethod.CREDIT_CONSUMPTION
        if requested:
            raise InsufficientCredits(details={**details, "credits": str(funds.credit_balance)})
    if requested in (None, BillingMethod.WALLET_DEDUCTION):
        if funds.take_wallet(total, reference=billing_id, actor=actor):
            return BillingMethod.WALLET_DEDUCTION
        if requested:
            raise InsufficientWalletBalance(
                details={**details, "balance": str(funds.wallet_balance)}
            )
    if funds.organization.charges_blocked(funds.at):
        raise SubscriptionPastDue(details=details)
    return BillingMethod.PAYMENT_CHARGE


def bump_daily_usage(organization: Organization, records: list[BillingRecord], **kwargs) -> None:
    """One multi-row upsert that adds ``records`` to the daily rollup (see
    ``daily_usage_upsert`` for the keyword arguments)."""
    sql, params = daily_usage_upsert(organization, records, **kwargs)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def daily_usage_upsert(
    organization: Organization,
    records: list[BillingRecord],
    *,
    sign: int = 1,
    billing_method: str | None = None,
    after_hot_rows: bool = False,
) -> tuple[str, list]:
    """The upsert (SQL and parameters) that adds ``records`` to the daily rollup (``sign``
    -1 takes them out), under their own billing method or ``billing_method``; with
    ``after_hot_rows``, worded as a part of the hot statement (``hot_rows``: it runs once
    the part before it has, and returns a row for each rollup row it wrote)."""
    tz = organization.tz
    totals: dict[tuple, list] = defaultdict(lambda: [ZERO, ZERO, 0])
    for record in records:
        key = (
            record.product_id,
            record.service_type,
            record.user_id,
            billing_method or record.billing_method,
            local_day(record.occurred_at, tz),
        )
        total = totals[key]
        total[0] += sign * record.usage_amount
        total[1] += sign * record.total_amount
        total[2] += sign
    table = connection.ops.quote_name(DailyUsage._meta.db_table)
    columns = [
        "organization_id", "product_id", "service_type", "user_id", "billing_method", "day",
        "quantity", "cost", "event_count",
    ]  # fmt: skip
    # Rows in one order (that of the unique key), so that two upserts cannot deadlock.
    ordered = [
        (organization.pk, product_id, service_type, user_id, method, day, *total)
        for (product_id, service_type, user_id, method, day), total in sorted(
            totals.items(), key=lambda item: (item[0][0], *item[0][2:])
        )
    ]
    if after_hot_rows:
        # One array a column (PostgreSQL): nine parameters however many rows.
        types = ["bigint", "bigint", "text", "text", "text", "date", "numeric", "numeric",
                 "bigint"]  # fmt: skip
        arrays = ", ".join(f"%s::{kind}[]" for kind in types)
        source = (
            f"SELECT {', '.join(columns)} FROM unnest({arrays}) WITH ORDINALITY"
            f" AS v({', '.join(columns)}, n) WHERE {{after}} ORDER BY n"
        )
        params = [pg_array.text(column) for column in zip(*ordered, strict=True)]
    else:
        row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        source = f"VALUES {', '.join([row] * len(ordered))}"
        params = [value for values in ordered for value in values]
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) {source} "
        "ON CONFLICT (organization_id, product_id, user_id, billing_method, day) DO UPDATE SET "
        f"quantity = {table}.quantity + excluded.quantity, "
        f"cost = {table}.cost + excluded.cost, "
        f"event_count = {table}.event_count + excluded.event_count"
        + (" RETURNING 1" if after_hot_rows else "")
    )
    return sql, params
