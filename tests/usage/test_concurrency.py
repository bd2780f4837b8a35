"""Nothing that charges may race: proven with real concurrent connections on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test import Client

from apps.customers import wallets
from apps.customers.models import WalletEntry
from apps.usage.models import BillingRecord, DailyUsage, UsageEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def post_many(key: str, bodies: list[tuple[dict, str]], workers: int) -> list:
    def post(item):
        body, idempotency_key = item
        try:
            response = Client().post(
                "/api/v1/usage/record",
                body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
                HTTP_IDEMPOTENCY_KEY=idempotency_key,
            )
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(post, bodies, timeout=600))


def test_a_thousand_retries_some_concurrent_leave_one_event_and_one_charge(org, key, calls):
    wallets.top_up_wallet(organization=org, amount=D(100), actor="t", reason="t")
    body = {"product_id": "calls", "usage_amount": 250, "user_id": "u1"}

    answers = post_many(key, [(body, "the-one-event")] * 1000, workers=8)

    statuses = [status for status, _ in answers]
    assert statuses.count(201) == 1
    assert statuses.count(200) == 999
    assert len({answer["billing_id"] for _, answer in answers}) == 1
    assert UsageEvent.objects.count() == 1
    assert BillingRecord.objects.count() == 1
    assert WalletEntry.objects.filter(kind="deduction").count() == 1
    assert wallets.wallet_balance(org) == D("97.50")
    assert DailyUsage.objects.get().event_count == 1


def test_concurrent_events_never_spend_the_wallet_past_its_balance(org, key, calls):
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    body = {"product_id": "calls", "usage_amount": 100, "billing_method": "wallet_deduction"}

    answers = post_many(key, [(body, f"event-{n}") for n in range(30)], workers=8)

    statuses = sorted(status for status, _ in answers)
    assert statuses.count(201) == 10
    assert statuses.count(402) == 20
    assert wallets.wallet_balance(org) == D(0)
    assert UsageEvent.objects.count() == 10


def test_concurrent_events_price_graduated_tiers_exactly_once_each(org, key, plan):
    from apps.pricing.cost_engine import PricingModel
    from apps.pricing.services import TierSpec
    from tests.pricing.factories import ProductFactory, price

    price(ProductFactory(code="tiered"), pricing_model=PricingModel.GRADUATED,
          tiers=[TierSpec(D(100), D(1)), TierSpec(None, D("0.5"))])  # fmt: skip
    body = {"product_id": "tiered", "usage_amount": 10}

    post_many(key, [(body, f"t-{n}") for n in range(40)], workers=8)

    # 400 units: the first 100 at $1, the other 300 at $0.50, whatever the interleaving.
    total = sum(BillingRecord.objects.values_list("total_amount", flat=True), D(0))
    assert total == D(250)
