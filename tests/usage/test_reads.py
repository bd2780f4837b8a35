from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from apps.customers import wallets
from tests.clock import instant, travel
from tests.http import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage(api_client, key, calls, llm):
    events = [
        {"event_id": "1", "product_id": "calls", "usage_amount": 100, "user_id": "alice"},
        {"event_id": "2", "product_id": "calls", "usage_amount": 50, "user_id": "bob"},
        {"event_id": "3", "product_id": "llm", "usage_details": {"input_tokens": 500_000},
         "user_id": "alice"},
        {"event_id": "4", "product_id": "calls", "usage_amount": 10, "user_id": "alice"},
    ]  # fmt: skip
    response = api_client.post(
        "/api/v1/usage/batch", {"events": events}, format="json", **bearer(key)
    )
    assert response.json()["accepted"] == 4


def get(api_client, key, path, **params):
    response = api_client.get(f"/api/v1/{path}", params, **bearer(key))
    assert response.status_code == 200, response.content
    return response.json()


def test_records_of_one_user_with_status_limit_and_offset(api_client, key, usage):
    everything = get(api_client, key, "billing/records/user/alice")
    page = get(api_client, key, "billing/records/user/alice", limit=2, offset=0)
    rest = get(api_client, key, "billing/records/user/alice", limit=2, offset=2)
    pending = get(api_client, key, "billing/records/user/alice", status="pending")

    assert len(everything["records"]) == 3
    assert [r["event_id"] for r in everything["records"]] == ["4", "3", "1"]
    assert page["has_more"] is True and len(page["records"]) == 2
    assert rest["has_more"] is False and len(rest["records"]) == 1
    assert {r["billing_status"] for r in pending["records"]} == {"pending"}


def test_records_list_filters_and_paginates_with_a_cursor(api_client, key, usage):
    first = get(api_client, key, "billing/records", limit=3)
    second = api_client.get(first["next"], **bearer(key)).json()
    calls_only = get(api_client, key, "billing/records", product_id="calls")

    assert len(first["results"]) == 3 and len(second["results"]) == 1
    ids = {r["billing_id"] for r in first["results"] + second["results"]}
    assert len(ids) == 4
    assert {r["product_id"] for r in calls_only["results"]} == {"calls"}


def test_stats_answers_seed_003s_fields_from_the_rollup(api_client, key, usage):
    stats = get(api_client, key, "stats")

    assert set(stats) == {
        "total_billing_records", "pending_billing_records", "completed_billing_records",
        "failed_billing_records", "total_revenue", "revenue_by_service", "revenue_by_method",
        "active_users", "active_organizations", "stats_period_start", "stats_period_end",
    }  # fmt: skip
    assert stats["total_billing_records"] == 4
    # calls: 160 x $0.01 = 1.60; llm: 1,000 included, 499,000 x $2/M = 0.998
    assert D(stats["total_revenue"]) == D("2.598")
    assert stats["active_users"] == 2
    assert stats["active_organizations"] == 1


def test_aggregations_group_by_user_and_product(api_client, key, usage):
    body = get(api_client, key, "usage/aggregations", group_by="user,product")

    rows = {(r["user"], r["product"]): r for r in body["results"]}
    assert rows[("alice", "calls")]["quantity"] == "110"
    assert rows[("alice", "calls")]["events"] == 2
    assert rows[("bob", "calls")]["cost"] == "0.5"


def test_aggregations_refuse_an_unknown_grouping(api_client, key):
    response = api_client.get("/api/v1/usage/aggregations", {"group_by": "colour"}, **bearer(key))

    assert response.status_code == 400


def test_trends_have_a_point_per_day(api_client, key, usage, org):
    body = get(api_client, key, "usage/trends", days=7)

    assert len(body["points"]) == 7
    today = timezone.now().astimezone(org.tz).date().isoformat()
    assert body["points"][-1]["day"] == today
    assert body["points"][-1]["events"] == 4
    assert body["points"][0]["events"] == 0


def test_top_consumers_are_the_highest_cost_users(api_client, key, usage):
    body = get(api_client, key, "usage/top-consumers", limit=1)

    assert body["consumers"] == "users"
    assert [r["consumer"] for r in body["results"]] == ["alice"]


def test_a_service_key_reads_platform_wide_stats(api_client, service_key, usage):
    stats = get(api_client, service_key, "stats")
    top = get(api_client, service_key, "usage/top-consumers")

    assert stats["active_organizations"] == 1
    assert top["consumers"] == "organizations"
    assert top["results"][0]["consumer"] == "acme"


def test_the_wallet_shows_balance_and_grants(api_client, key, org):
    wallets.top_up_wallet(organization=org, amount=D("12.5"), actor="t", reason="t")
    wallets.grant_credits(organization=org, amount=D(3), reason="welcome", granted_by="t")

    body = get(api_client, key, "wallet")

    assert body["wallet_balance"] == "12.50"
    assert body["credit_balance"] == "3.00"
    assert body["credit_grants"][0]["reason"] == "welcome"


@pytest.mark.parametrize("at", ["2026-12-07 23:30", "2026-11-30 23:30", "2026-12-01 00:30"])
def test_ranges_end_on_the_organisations_own_day(api_client, key, service_key, calls, at):
    """Late in the UTC evening Berlin (the organisation's zone) is already on the next day:
    the default range ends on the organisation's today, and platform-wide on the latest
    date any zone has reached, so the newest rollup day is counted."""
    events = [{"event_id": "a", "product_id": "calls", "usage_amount": 3, "user_id": "alice"}]
    with travel(at):
        response = api_client.post(
            "/api/v1/usage/batch", {"events": events}, format="json", **bearer(key)
        )
        assert response.json()["accepted"] == 1
        own = get(api_client, key, "stats")
        platform = get(api_client, service_key, "stats")
        records = get(api_client, key, "billing/records")

    berlin = instant(at).astimezone(ZoneInfo("Europe/Berlin"))
    assert own["stats_period_end"] == berlin.date().isoformat()
    assert D(own["total_revenue"]) == D("0.03") and own["total_billing_records"] == 1
    assert D(platform["total_revenue"]) == D("0.03") and platform["active_organizations"] == 1
    assert [r["billing_id"] for r in records["results"]] == [
        response.json()["results"][0]["billing_id"]
    ]
