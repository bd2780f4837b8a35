"""Every method of BillingClient against the portal served for real."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from billing_client import NotFound, usage_event
from billing_client.results import BatchItem

from tests.client.conftest import usage_count

pytestmark = pytest.mark.django_db(transaction=True)


def test_recording_usage_answers_the_priced_record_with_decimal_money(billing, portal):
    recorded = billing.record_usage("calls", 3, user_id="user-1", usage_details={"route": "/x"})

    assert recorded.duplicate is False
    assert recorded.total_cost == Decimal("0.03") and isinstance(recorded.total_cost, Decimal)
    assert recorded.unit_price == Decimal("0.01")
    assert recorded.usage_amount == Decimal(3)
    assert (recorded.product_id, recorded.user_id) == ("calls", "user-1")
    assert recorded.organization_id == "client-co"
    assert recorded.billing_method == "payment_charge" and recorded.billing_status == "pending"
    assert recorded.breakdown[0].amount == Decimal("0.03")
    assert uuid.UUID(recorded.event_id).version == 4
    assert usage_count() == 1


def test_the_same_idempotency_key_twice_is_recorded_once(billing, portal):
    first = billing.record_usage("calls", 2, idempotency_key="order-17")
    again = billing.record_usage("calls", 2, idempotency_key="order-17")

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.billing_id == first.billing_id
    assert usage_count() == 1


def test_a_batch_answers_each_event_and_keeps_their_keys(billing, portal):
    events = [
        usage_event(product_id="calls", quantity=1, event_id="b-1"),
        usage_event(product_id="no-such-product", quantity=1, event_id="b-2"),
        {"product_id": "calls", "usage_amount": "4"},  # gets its key from the client
        usage_event(product_id="calls", quantity=1, event_id="b-1"),
    ]

    answer = billing.record_batch(events)

    assert (answer.accepted, answer.duplicates, answer.rejected) == (2, 1, 1)
    assert [item.status for item in answer.results] == [
        "accepted", "rejected", "accepted", "duplicate",
    ]  # fmt: skip
    refused: BatchItem = answer.results[1]
    assert isinstance(refused.error, NotFound) and refused.error.code == "product_not_found"
    assert answer.results[2].event_id and answer.results[2].total_cost == Decimal("0.04")
    assert usage_count() == 2


def test_calculating_and_estimating_price_usage_without_recording_it(billing, portal):
    tokens = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}

    quote = billing.calculate_cost("gpt-4o-mini", dimensions=tokens)
    estimate = billing.estimate_cost("gpt-4o-mini", input_tokens=1_000_000, output_tokens=1_000_000)

    assert quote.total_cost == Decimal("0.75") == estimate.total_cost
    assert quote.currency == "USD" and quote.usage_amount == Decimal(2_000_000)
    assert {line.dimension: line.amount for line in quote.breakdown.dimensions} == {
        "input_tokens": Decimal("0.15"), "output_tokens": Decimal("0.60"),
    }  # fmt: skip
    assert "payment_charge" in quote.available_billing_methods
    assert usage_count() == 0


def test_the_quota_check_reads_what_the_plan_includes(billing, portal):
    before = billing.check_quota(2, product_id="agent-run")
    billing.record_usage("agent-run", 2)
    after = billing.check_quota(2, product_id="agent-run")

    assert before.has_quota and before.allowed
    assert (before.quota_limit, before.used, before.remaining) == (Decimal(3), 0, Decimal(3))
    assert (after.used, after.remaining, after.allowed) == (Decimal(2), Decimal(1), False)
    assert billing.check_quota(5, product_id="calls").has_quota is False


def test_budgets_are_created_read_checked_changed_and_deleted(billing, portal):
    budget = billing.create_budget(name="cap", limit=Decimal("1.00"), period="monthly")
    billing.record_usage("calls", 90)  # $0.90

    fits = billing.check_budgets("calls", 10)
    too_much = billing.check_budgets("calls", 11)
    listed = billing.list_budgets()
    violations = billing.budget_violations()
    raised = billing.update_budget(budget.id, limit="2.00")
    read = billing.get_budget(budget.id)
    billing.delete_budget(budget.id)

    assert budget.limit == Decimal("1.00") and budget.is_hard and budget.scope == "all"
    assert fits.allowed and fits.estimated_cost == Decimal("0.10")
    assert fits.budgets[0].spent == Decimal("0.90") and fits.budgets[0].fits
    assert not too_much.allowed and too_much.budgets[0].fits is False
    assert [b.name for b in listed] == ["cap"]
    assert listed[0].current_period.spent == Decimal("0.90")
    assert [b.name for b in violations.warnings] == ["cap"]  # past 80 %
    assert raised.limit == Decimal(2) == read.limit
    assert billing.list_budgets() == []


def test_billing_records_come_page_by_page_and_per_user(billing, portal):
    for index in range(5):
        billing.record_usage("calls", index + 1, user_id=f"user-{index % 2}")

    first = billing.billing_records(limit=2)
    second = billing.billing_records(limit=2, cursor=first.next_cursor)
    every = list(billing.iter_billing_records(limit=2))
    mine = billing.user_billing_records("user-0", limit=10)
    today = billing.billing_records(start_date=date.today(), product_id="calls")

    assert len(first.records) == 2 and first.next_cursor
    assert {r.billing_id for r in first.records}.isdisjoint(r.billing_id for r in second.records)
    assert sorted(r.usage_amount for r in every) == [1, 2, 3, 4, 5]
    assert mine.user_id == "user-0" and len(mine.records) == 3 and not mine.has_more
    assert len(today.records) == 5


def test_a_pending_record_is_settled_from_the_wallet_and_refunded(billing, portal):
    from apps.customers.wallets import top_up_wallet

    charged = billing.record_usage("calls", 30)  # $0.30 on the invoice: no money yet
    top_up_wallet(organization=portal.organization, amount=Decimal(5), actor="t", reason="t")

    paid = billing.process_billing(charged.billing_id, "wallet_deduction")
    paid_again = billing.process_billing(charged.billing_id, "wallet_deduction")
    refunded = billing.refund_billing(charged.billing_id, reason="goodwill")

    assert charged.billing_status == "pending"
    assert (paid.billing_method, paid.billing_status) == ("wallet_deduction", "completed")
    assert paid_again.billing_status == "completed"
    assert refunded.billing_status == "refunded"
    assert billing.wallet().wallet_balance == Decimal("5.00")


def test_stats_and_usage_reports_count_what_was_recorded(billing, portal):
    billing.record_usage("calls", 10, user_id="ann")
    billing.record_usage("gpt-4o-mini", dimensions={"input_tokens": 1000}, user_id="bob")

    stats = billing.stats()
    by_product = billing.usage_aggregations(group_by=["product"])
    trends = billing.usage_trends(days=7)
    consumers = billing.top_consumers(limit=5)

    assert stats.total_billing_records == 2 and stats.pending_billing_records == 2
    assert stats.total_revenue == Decimal("0.10015")
    assert stats.revenue_by_service["api_gateway"] == Decimal("0.1")
    assert stats.active_users == 2 and stats.stats_period_end == date.today()
    assert {row.group["product"]: row.events for row in by_product.results} == {
        "calls": 1, "gpt-4o-mini": 1,
    }  # fmt: skip
    assert len(trends.points) == 7 and sum(p.events for p in trends.points) == 2
    assert consumers.consumers == "users" and consumers.results[0].group["consumer"] == "ann"


def test_the_caller_its_organisation_wallet_prices_and_statements(billing, portal):
    info = billing.info()
    organization = billing.organization()
    wallet = billing.wallet()
    sheet = billing.products()
    calls = billing.product("calls")
    statements = billing.statements()

    assert info.key_kind == "organization" and info.organization_id == "client-co"
    assert "usage:write" in info.scopes
    assert (organization.organization_id, organization.currency) == ("client-co", "USD")
    assert wallet.wallet_balance == Decimal(0) and wallet.credit_grants == []
    assert sheet.plan == "client-plan"
    assert {p.product_id for p in sheet.products} >= {"calls", "agent-run", "gpt-4o-mini"}
    assert calls.prices[0].unit_price == Decimal("0.01")
    runs = next(p for p in sheet.products if p.product_id == "agent-run")
    assert runs.included.quantity == Decimal(3)
    assert statements.statements == [] and statements.next_cursor is None
    with pytest.raises(NotFound):
        billing.statement(12345)
