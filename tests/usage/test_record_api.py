from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.customers import demo, wallets
from apps.customers.models import WalletEntry
from apps.usage.models import BillingEvent, BillingRecord, DailyUsage, UsageEvent
from tests.clock import MID_MONTH, travel
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

RECORD = "/api/v1/usage/record"


def record(api_client, key, body, idempotency_key=None):
    headers = bearer(key)
    if idempotency_key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return api_client.post(RECORD, body, format="json", **headers)


def test_seed_003s_end_to_end_flow_on_the_demo_portal(api_client):
    # In the middle of a month, when the demo's usage has used up the plan's inclusion (on
    # the 1st it is fresh, and the event would be included).
    with travel(MID_MONTH):
        _seed_003s_flow(api_client)


def _seed_003s_flow(api_client):
    call_command("seed_demo", stdout=StringIO())
    headers = {"HTTP_X_API_KEY": demo.DEMO_ORGANIZATION_KEY}
    request = {
        "user_id": "user123",
        "product_id": "gpt-4",
        "service_type": "model_inference",
        "usage_amount": 1000,
    }

    calculated = api_client.post("/api/v1/billing/calculate", request, format="json", **headers)
    recorded = api_client.post(
        RECORD, {**request, "billing_method": "wallet_deduction"}, format="json", **headers
    )
    listed = api_client.get("/api/v1/billing/records/user/user123", **headers)

    assert calculated.status_code == 200
    assert recorded.status_code == 201, recorded.content
    assert recorded.json()["total_cost"] == calculated.json()["total_cost"]
    records = listed.json()["records"]
    assert listed.status_code == 200
    # Newest first, after the demo's own history of user123.
    assert records[0]["billing_id"] == recorded.json()["billing_id"]
    assert {r["user_id"] for r in records} == {"user123"}
    assert records[0]["billing_status"] == "completed"
    assert records[0]["billing_method"] == "wallet_deduction"


def test_a_recorded_event_is_priced_billed_and_rolled_up(api_client, key, calls):
    response = record(
        api_client, key, {"product_id": "calls", "usage_amount": 250, "user_id": "u1"}
    )

    body = response.json()
    assert response.status_code == 201, body
    assert body["total_cost"] == "2.50"
    assert body["billing_method"] == "payment_charge"
    assert body["billing_status"] == "pending"
    record_row = BillingRecord.objects.get(billing_id=body["billing_id"])
    assert record_row.total_amount == D("2.50")
    assert BillingEvent.objects.filter(record=record_row).count() == 1
    rollup = DailyUsage.objects.get()
    assert (rollup.quantity, rollup.cost, rollup.event_count) == (D(250), D("2.50"), 1)


def test_a_retry_with_the_same_key_returns_the_first_answer_and_bills_nothing(
    api_client, key, calls, org
):
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    body = {"product_id": "calls", "usage_amount": 100}

    first = record(api_client, key, body, idempotency_key="evt-1")
    second = record(api_client, key, body, idempotency_key="evt-1")

    assert first.status_code == 201 and second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["billing_id"] == first.json()["billing_id"]
    assert second.json()["duplicate"] is True
    assert UsageEvent.objects.count() == 1
    assert wallets.wallet_balance(org) == D(9)
    assert DailyUsage.objects.get().event_count == 1


def test_a_retry_after_the_budget_filled_up_is_answered_as_the_stored_event(
    api_client, key, calls, org
):
    """The client never got the first answer (a timeout, a crash); by its retry the hard
    budget is full. The event was recorded: the retry is its duplicate, not a refusal."""
    from apps.budgets.models import Budget
    from apps.budgets.services import save_budget

    save_budget(Budget(organization=org, name="Month", limit=D("1.00"), currency="USD"))
    body = {"product_id": "calls", "usage_amount": 60}
    first = record(api_client, key, body, idempotency_key="evt-1")
    filled = record(api_client, key, {**body, "usage_amount": 40}, idempotency_key="evt-2")
    refused = record(api_client, key, {**body, "usage_amount": 1}, idempotency_key="evt-3")

    retry = record(api_client, key, body, idempotency_key="evt-1")

    assert (first.status_code, filled.status_code, refused.status_code) == (201, 201, 402)
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert retry.json()["billing_id"] == first.json()["billing_id"]
    assert UsageEvent.objects.count() == 2
    other = record(api_client, key, {**body, "usage_amount": 61}, idempotency_key="evt-1")
    assert other.status_code == 409 and error_code(other) == "idempotency_conflict"


def test_the_same_key_with_another_payload_is_409(api_client, key, calls):
    record(api_client, key, {"product_id": "calls", "usage_amount": 1}, idempotency_key="e")

    response = record(api_client, key, {"product_id": "calls", "usage_amount": 2}, "e")

    assert response.status_code == 409
    assert error_code(response) == "idempotency_conflict"
    assert UsageEvent.objects.count() == 1


def test_event_id_in_the_body_is_the_idempotency_key(api_client, key, calls):
    body = {"product_id": "calls", "usage_amount": 1, "event_id": "body-key"}

    first = record(api_client, key, body)
    second = record(api_client, key, body, idempotency_key="body-key")
    clash = record(api_client, key, body, idempotency_key="other-key")

    assert first.json()["event_id"] == "body-key"
    assert second.status_code == 200
    assert clash.status_code == 400 and error_code(clash) == "invalid_idempotency_key"


@pytest.mark.parametrize("bad_key", ["", "   ", "x" * 256])
def test_an_empty_or_overlong_key_is_400(api_client, key, calls, bad_key):
    response = record(api_client, key, {"product_id": "calls", "usage_amount": 1}, bad_key)

    assert response.status_code == 400
    assert error_code(response) == "invalid_idempotency_key"


def test_a_request_that_fails_validation_does_not_consume_its_key(api_client, key, calls):
    bad = record(api_client, key, {"product_id": "calls", "usage_amount": -1}, "k")
    good = record(api_client, key, {"product_id": "calls", "usage_amount": 1}, "k")

    assert bad.status_code == 400
    assert good.status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"product_id": "calls", "usage_amount": "NaN"}, 400, "validation_error"),
        ({"product_id": "calls", "usage_amount": "1e400"}, 400, "validation_error"),
        ({"product_id": "calls", "usage_amount": True}, 400, "validation_error"),
        ({"product_id": "calls"}, 400, "validation_error"),
        ({"usage_amount": 1}, 400, "validation_error"),
        ({"product_id": 5, "usage_amount": 1}, 400, "validation_error"),
        ({"product_id": "nope", "usage_amount": 1}, 404, "product_not_found"),
        (
            {"product_id": "calls", "usage_amount": 1, "service_type": "storage_minio"},
            400,
            "validation_error",
        ),
        ({"product_id": "calls", "usage_amount": 1, "billing_method": "cash"}, 400,
         "validation_error"),
        ({"product_id": "calls", "usage_amount": 1, "occurred_at": "yesterday"}, 400,
         "validation_error"),
    ],
)  # fmt: skip
def test_bad_events_get_a_stable_code_and_store_nothing(api_client, key, calls, body, status, code):
    response = record(api_client, key, body)

    assert response.status_code == status, response.content
    assert error_code(response) == code
    assert not UsageEvent.objects.exists()


def test_events_outside_the_ingestion_window_are_refused(api_client, key, calls):
    now = timezone.now()
    old = record(
        api_client, key,
        {"product_id": "calls", "usage_amount": 1,
         "occurred_at": (now - timedelta(days=31)).isoformat()},
    )  # fmt: skip
    future = record(
        api_client, key,
        {"product_id": "calls", "usage_amount": 1,
         "occurred_at": (now + timedelta(hours=25)).isoformat()},
    )  # fmt: skip
    recent = record(
        api_client, key,
        {"product_id": "calls", "usage_amount": 1,
         "occurred_at": (now - timedelta(days=29)).isoformat()},
    )  # fmt: skip

    assert (old.status_code, error_code(old)) == (400, "event_too_old")
    assert (future.status_code, error_code(future)) == (400, "event_in_future")
    assert recent.status_code == 201


def test_an_organization_key_naming_another_organization_is_answered_like_an_unknown_one(
    api_client, key, calls
):
    other = OrganizationFactory()

    taken = record(api_client, key, {"product_id": "calls", "usage_amount": 1,
                                     "organization_id": other.slug})  # fmt: skip
    unknown = record(api_client, key, {"product_id": "calls", "usage_amount": 1,
                                       "organization_id": "ghost"})  # fmt: skip

    assert taken.status_code == unknown.status_code == 404
    assert error_code(taken) == error_code(unknown) == "organization_not_found"
    assert not UsageEvent.objects.exists()


def test_inclusion_then_wallet_then_charge(api_client, key, llm, org):
    wallets.top_up_wallet(organization=org, amount=D("0.01"), actor="t", reason="t")

    included = record(api_client, key, {"product_id": "llm",
                                        "usage_details": {"input_tokens": 800}})  # fmt: skip
    split = record(api_client, key, {"product_id": "llm",
                                     "usage_details": {"input_tokens": 700,
                                                       "output_tokens": 100}})  # fmt: skip
    charged = record(api_client, key, {"product_id": "llm",
                                       "usage_details": {"output_tokens": 2_000_000}})  # fmt: skip

    assert included.json()["billing_method"] == "subscription_included"
    # 200 input tokens left in the inclusion; 500 input x $2/M + 100 output x $8/M
    body = split.json()
    assert body["included_quantity"] == "200"
    assert body["total_cost"] == "0.0018"
    assert body["billing_method"] == "wallet_deduction"
    assert charged.json()["billing_method"] == "payment_charge"  # $16 > wallet
    assert wallets.wallet_balance(org) == D("0.0082")


def test_credits_are_used_before_the_wallet_earliest_expiry_first(api_client, key, calls, org):
    later = wallets.grant_credits(organization=org, amount=D(5), reason="promo", granted_by="t",
                                  expires_at=timezone.now() + timedelta(days=60))  # fmt: skip
    sooner = wallets.grant_credits(organization=org, amount=D(1), reason="promo", granted_by="t",
                                   expires_at=timezone.now() + timedelta(days=5))  # fmt: skip
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")

    response = record(api_client, key, {"product_id": "calls", "usage_amount": 150})

    assert response.json()["billing_method"] == "credit_consumption"
    sooner.refresh_from_db()
    later.refresh_from_db()
    assert (sooner.remaining, later.remaining) == (D(0), D("4.50"))
    assert wallets.wallet_balance(org) == D(10)


def test_a_requested_wallet_deduction_without_funds_is_402_and_stores_nothing(
    api_client, key, calls
):
    response = record(
        api_client, key, {"product_id": "calls", "usage_amount": 100,
                          "billing_method": "wallet_deduction"}
    )  # fmt: skip

    assert response.status_code == 402
    assert error_code(response) == "insufficient_wallet_balance"
    assert not UsageEvent.objects.exists()
    assert not WalletEntry.objects.exists()


def test_graduated_tiers_follow_the_periods_usage_across_events(api_client, key, plan):
    from apps.pricing.cost_engine import PricingModel
    from apps.pricing.services import TierSpec
    from tests.pricing.factories import ProductFactory, price

    product = ProductFactory(code="tiered")
    price(product, pricing_model=PricingModel.GRADUATED,
          tiers=[TierSpec(D(100), D(1)), TierSpec(None, D("0.5"))])  # fmt: skip

    first = record(api_client, key, {"product_id": "tiered", "usage_amount": 80})
    second = record(api_client, key, {"product_id": "tiered", "usage_amount": 40})

    assert first.json()["total_cost"] == "80.00"
    assert second.json()["total_cost"] == "30.00"  # 20 x $1 + 20 x $0.50


def test_a_suspended_organization_cannot_record(api_client, key, calls, org):
    org.status = "suspended"
    org.save()

    response = record(api_client, key, {"product_id": "calls", "usage_amount": 1})

    assert response.status_code == 403
    assert error_code(response) == "organization_suspended"
