from decimal import Decimal as D

import pytest

from apps.usage.models import BillingRecord, DailyUsage, UsageEvent
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/usage/batch"


def batch(api_client, key, events, **extra):
    return api_client.post(BATCH, {"events": events, **extra}, format="json", **bearer(key))


def test_a_batch_stores_exactly_its_valid_events_and_reports_each(api_client, key, calls):
    batch(api_client, key, [{"event_id": "old", "product_id": "calls", "usage_amount": 1}])

    response = batch(
        api_client,
        key,
        [
            {"event_id": "a", "product_id": "calls", "usage_amount": 10, "user_id": "u1"},
            {"event_id": "old", "product_id": "calls", "usage_amount": 1},  # duplicate
            {"event_id": "b", "product_id": "calls", "usage_amount": -5},  # invalid amount
            {"event_id": "c", "product_id": "no-such", "usage_amount": 1},  # unknown product
            {"event_id": "old", "product_id": "calls", "usage_amount": 2},  # key conflict
            "not an object",
            {"event_id": "d", "product_id": "calls", "usage_amount": 20, "user_id": "u2"},
            {"event_id": "d", "product_id": "calls", "usage_amount": 20, "user_id": "u2"},
        ],
    )

    body = response.json()
    assert response.status_code == 200, body
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [
        (0, "accepted"), (1, "duplicate"), (2, "rejected"), (3, "rejected"), (4, "rejected"),
        (5, "rejected"), (6, "accepted"), (7, "duplicate"),
    ]  # fmt: skip
    codes = {r["index"]: r["error"]["code"] for r in body["results"] if "error" in r}
    assert codes == {
        2: "validation_error", 3: "product_not_found", 4: "idempotency_conflict",
        5: "validation_error",
    }  # fmt: skip
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 4)
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == {"old", "a", "d"}
    assert BillingRecord.objects.count() == 3
    assert body["results"][6]["total_cost"] == "0.20"
    assert body["results"][7]["billing_id"] == body["results"][6]["billing_id"]


def test_the_batch_rollup_adds_up_the_events(api_client, key, calls):
    events = [
        {"event_id": f"e{i}", "product_id": "calls", "usage_amount": i, "user_id": f"u{i % 3}"}
        for i in range(1, 101)
    ]

    batch(api_client, key, events)

    rows = DailyUsage.objects.all()
    assert sum(row.quantity for row in rows) == D(5050)
    assert sum(row.cost for row in rows) == D("50.50")
    assert sum(row.event_count for row in rows) == 100
    assert rows.count() == 3


def test_a_batch_over_1000_events_is_413(api_client, key, calls):
    events = [{"product_id": "calls", "usage_amount": 1}] * 1001

    response = batch(api_client, key, events)

    assert response.status_code == 413
    assert error_code(response) == "batch_too_large"
    assert not UsageEvent.objects.exists()


def test_a_batch_needs_a_list_of_events(api_client, key):
    response = api_client.post(BATCH, {"events": "many"}, format="json", **bearer(key))

    assert response.status_code == 400
    assert error_code(response) == "validation_error"


def test_an_organization_keys_batch_cannot_record_for_another_organization(api_client, key, calls):
    other = OrganizationFactory()

    body = batch(
        api_client,
        key,
        [
            {"product_id": "calls", "usage_amount": 1},
            {"product_id": "calls", "usage_amount": 1, "organization_id": other.slug},
        ],
    ).json()

    assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
    assert body["results"][1]["error"]["code"] == "organization_not_found"
    assert not UsageEvent.objects.filter(organization=other).exists()


def test_a_service_key_batch_spans_organizations(api_client, service_key, calls, org):
    other = OrganizationFactory(plan=org.plan)

    body = batch(
        api_client,
        service_key,
        [
            {"product_id": "calls", "usage_amount": 1},
            {"product_id": "calls", "usage_amount": 2, "organization_id": other.slug},
        ],
        organization_id=org.slug,
    ).json()

    assert body["accepted"] == 2
    assert UsageEvent.objects.filter(organization=org).count() == 1
    assert UsageEvent.objects.filter(organization=other).count() == 1


def test_events_of_a_batch_price_tiers_in_order(api_client, key, plan):
    from apps.pricing.cost_engine import PricingModel
    from apps.pricing.services import TierSpec
    from tests.pricing.factories import ProductFactory, price

    price(ProductFactory(code="tiered"), pricing_model=PricingModel.GRADUATED,
          tiers=[TierSpec(D(100), D(1)), TierSpec(None, D("0.5"))])  # fmt: skip

    body = batch(
        api_client, key, [{"product_id": "tiered", "usage_amount": 60} for _ in range(3)]
    ).json()

    assert [r["total_cost"] for r in body["results"]] == ["60.00", "50.00", "30.00"]


def test_alike_events_of_a_batch_are_priced_alike_once_the_inclusion_is_used_up(
    api_client, key, llm
):
    """The plan includes 1,000 tokens: the first events use them up in order, the rest
    (alike, at $2/M) cost the same; each record keeps its own full breakdown."""
    events = [{"product_id": "llm", "usage_details": {"input_tokens": 400}} for _ in range(5)]

    body = batch(api_client, key, events).json()

    assert [r["total_cost"] for r in body["results"]] == [
        "0.00", "0.00", "0.0004", "0.0008", "0.0008"
    ]  # fmt: skip
    records = {r.billing_id: r for r in BillingRecord.objects.all()}
    lines = [records[r["billing_id"]].breakdown for r in body["results"]]
    assert [line[0]["included_quantity"] for line in lines] == ["400", "400", "200", "0", "0"]
    assert lines[3] == lines[4] and lines[4][0]["amount"] == "0.0008"
    assert [records[r["billing_id"]].billing_method for r in body["results"]][:2] == [
        "subscription_included", "subscription_included"
    ]  # fmt: skip
