"""Enforcement decided without holding the hot rows: events are priced and paid for from
rows read without a lock, and the hot rows (counters, budget periods, credit grants, the
wallet, the rollup) are taken last, each in one statement that checks what the decision
relied on. Proven with real concurrent connections on PostgreSQL: nothing is spent past a
hard limit, no ledger differs from its sum, no tier is priced twice."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test import Client
from prometheus_client import REGISTRY

from apps.budgets.models import Budget, BudgetPeriod
from apps.budgets.services import save_budget
from apps.customers import wallets
from apps.customers.models import ApiKey, CreditEntry, CreditGrant, Wallet, WalletEntry
from apps.pricing.cost_engine import PricingModel
from apps.pricing.services import TierSpec
from apps.usage.models import BillingRecord, DailyUsage, UsageCounter, UsageEvent
from tests.pricing.factories import ProductFactory, price

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def decided_again() -> float:
    return REGISTRY.get_sample_value("billing_ingestion_decided_again_total") or 0.0


def post(key: str, body: dict, idempotency_key: str):
    try:
        response = Client().post(
            "/api/v1/usage/record", body, content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_IDEMPOTENCY_KEY=idempotency_key,
        )  # fmt: skip
        return response.status_code, response.json()
    finally:
        connection.close()


@pytest.fixture
def tiered(plan):
    """Graduated: the first 20 units of a month at $0.10, the rest at $0.05."""
    product = ProductFactory(code="tiered")
    price(product, pricing_model=PricingModel.GRADUATED,
          tiers=[TierSpec(D(20), D("0.10")), TierSpec(None, D("0.05"))])  # fmt: skip
    return product


def graduated(units: D) -> D:
    return min(units, D(20)) * D("0.10") + max(units - 20, D(0)) * D("0.05")


@pytest.fixture
def enforced(org, key, calls, tiered):
    api_key = ApiKey.objects.get(organization=org)
    for budget in (
        Budget(organization=org, name="Month", limit=D("5.00"), currency="USD"),
        Budget(organization=org, name="Key", limit=D("4.00"), currency="USD",
               scope=Budget.Scope.API_KEY, api_key=api_key),
        Budget(organization=org, name="Calls", limit=D("1.00"), currency="USD",
               is_hard=False, period=Budget.Period.DAILY, scope=Budget.Scope.PRODUCT,
               product=calls),
    ):  # fmt: skip
        save_budget(budget)
    wallets.grant_credits(organization=org, amount=D("1.00"), reason="t", granted_by="t")
    wallets.top_up_wallet(organization=org, amount=D("2.00"), actor="t", reason="t")
    return org


@pytest.mark.parametrize("trial", range(3))
def test_a_hundred_concurrent_events_meet_budgets_credits_wallet_and_tiers_exactly(
    enforced, key, trial
):
    bodies = []
    for n in range(100):
        body = ({"product_id": "calls", "usage_amount": 10 + n % 3} if n % 2
                else {"product_id": "tiered", "usage_amount": 1})  # fmt: skip
        bodies.append((body, f"trial-{trial}-{n}"))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda item: post(key, *item), bodies, timeout=600))

    statuses = [status for status, _ in answers]
    assert set(statuses) <= {201, 402} and statuses.count(201) > 0 and 402 in statuses
    refusals = {body["error"]["code"] for status, body in answers if status == 402}
    assert refusals == {"budget_exceeded"}
    records = list(BillingRecord.objects.select_related("product"))
    assert len(records) == statuses.count(201) == UsageEvent.objects.count()
    spent = sum((r.total_amount for r in records), D(0))
    # The key's $4.00 binds first: never a cent past it, and refused only when full.
    assert D("3.87") < spent <= D("4.00")
    periods = {p.budget.name: p.spent for p in BudgetPeriod.objects.select_related("budget")}
    calls_spent = sum((r.total_amount for r in records if r.product.code == "calls"), D(0))
    assert periods == {"Month": spent, "Key": spent, "Calls": calls_spent}
    # Tiers: every unit priced once, at its place in the month, whatever the interleaving.
    tiered_records = [r for r in records if r.product.code == "tiered"]
    tiered_units = sum((r.usage_amount for r in tiered_records), D(0))
    assert sum((r.total_amount for r in tiered_records), D(0)) == graduated(tiered_units)
    assert UsageCounter.objects.get(key__startswith="price:").quantity == tiered_units
    # Credits first, then the wallet, then the invoice; each ledger equals its balance.
    by_method = {}
    for r in records:
        by_method[r.billing_method] = by_method.get(r.billing_method, D(0)) + r.total_amount
    grant = CreditGrant.objects.get()
    consumed = -sum(CreditEntry.objects.filter(kind="consumption").values_list(
        "amount", flat=True), D(0))  # fmt: skip
    assert grant.remaining == D("1.00") - consumed == D("1.00") - by_method[
        "credit_consumption"] >= 0  # fmt: skip
    wallet = Wallet.objects.get()
    deducted = -sum(WalletEntry.objects.filter(kind="deduction").values_list(
        "amount", flat=True), D(0))  # fmt: skip
    assert wallet.balance == D("2.00") - deducted == D("2.00") - by_method[
        "wallet_deduction"] >= 0  # fmt: skip
    balance = D(0)
    for entry in WalletEntry.objects.order_by("id"):
        balance += entry.amount
        assert entry.balance_after == balance
    rollup = DailyUsage.objects.all()
    assert sum(r.event_count for r in rollup) == len(records)
    assert sum((r.cost for r in rollup), D(0)) == spent


def test_an_event_is_decided_without_the_locks_and_a_refusal_under_them(enforced, key):
    before = decided_again()
    status, _ = post(key, {"product_id": "tiered", "usage_amount": 1}, "opens")
    assert status == 201
    assert decided_again() == before + 1  # its counter did not exist: opened under the locks
    before = decided_again()
    for n in range(10):
        status, _ = post(key, {"product_id": "tiered", "usage_amount": 1}, f"calm-{n}")
        assert status == 201
    assert decided_again() == before  # alone, nothing moved: no second decision

    status, body = post(key, {"product_id": "calls", "usage_amount": 1000}, "too-big")

    assert status == 402 and body["error"]["code"] == "budget_exceeded"
    assert decided_again() == before + 1  # the refusal was decided under the locks
    assert body["error"]["details"]["budget_name"] == "Key"


def test_a_wallet_emptied_meanwhile_sends_the_event_to_its_next_method(enforced, key):
    """An event that read a wallet with money and finds it emptied by the time it takes
    the wallet's row is decided again: paid from the next method, never past zero."""
    CreditGrant.objects.update(remaining=D(0))
    Wallet.objects.update(balance=D("0.10"))
    answers = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(
            lambda n: post(key, {"product_id": "calls", "usage_amount": 10}, f"w-{n}"),
            range(24), timeout=600))  # fmt: skip

    assert [status for status, _ in answers].count(201) == 24
    methods = sorted(body["billing_method"] for _, body in answers)
    assert methods.count("wallet_deduction") == 1
    assert methods.count("payment_charge") == 23
    assert Wallet.objects.get().balance == D(0)


def test_concurrent_batches_price_every_tier_unit_once(enforced, key):
    """Batches that move the same tier counter meanwhile are priced again from where the
    counter really stood: kept when every line is the same, decided again when not."""
    Budget.objects.update(limit=D(1_000))  # (room for everything)

    def batch(n):
        events = [{"event_id": f"b{n}-{i}", "product_id": "tiered", "usage_amount": 1}
                  for i in range(25)]  # fmt: skip
        try:
            return Client().post(
                "/api/v1/usage/batch", {"events": events}, content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
            ).status_code  # fmt: skip
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(batch, range(8), timeout=600)) == [200] * 8

    records = BillingRecord.objects.all()
    assert records.count() == 200
    assert sum((r.total_amount for r in records), D(0)) == graduated(D(200))
    assert UsageCounter.objects.get(key__startswith="price:").quantity == 200
