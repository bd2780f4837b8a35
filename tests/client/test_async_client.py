"""AsyncBillingClient: the same operations, errors and retries, as coroutines."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from billing_client import BudgetExceeded, IdempotencyConflict, UsageTracker, usage_event

from tests.client.conftest import TIMEOUT, usage_count

pytestmark = pytest.mark.django_db(transaction=True)


def test_async_usage_recording_batches_and_reads(portal, async_client_of):
    async def scenario():
        async with async_client_of() as client:
            recorded = await client.record_usage("calls", 4, user_id="ann")
            again = await client.record_usage(
                "calls", 4, user_id="ann", idempotency_key=recorded.event_id
            )
            batch = await client.record_batch(
                [usage_event(product_id="calls", quantity=1) for _ in range(3)]
            )
            quote = await client.calculate_cost("calls", 10)
            estimate = await client.estimate_cost(
                "gpt-4o-mini", input_tokens=1_000_000, output_tokens=0
            )
            quota = await client.check_quota(1, product_id="agent-run")
            budgets = await client.check_budgets("calls", 1)
            records = [record async for record in client.iter_billing_records(limit=2)]
            stats = await client.stats()
            return recorded, again, batch, quote, estimate, quota, budgets, records, stats

    recorded, again, batch, quote, estimate, quota, budgets, records, stats = asyncio.run(
        scenario()
    )

    assert recorded.total_cost == Decimal("0.04") and again.duplicate
    assert again.billing_id == recorded.billing_id
    assert batch.accepted == 3
    assert quote.total_cost == Decimal("0.10") and estimate.total_cost == Decimal("0.15")
    assert quota.remaining == Decimal(3) and budgets.allowed
    assert len(records) == 4
    assert stats.total_billing_records == 4 and stats.total_revenue == Decimal("0.07")
    assert usage_count() == 4


def test_async_refusals_are_the_same_typed_errors(portal, async_client_of):
    async def scenario():
        async with async_client_of() as client:
            await client.create_budget(name="cap", limit=Decimal("0.05"))
            await client.record_usage("calls", 1, idempotency_key="k")
            with pytest.raises(IdempotencyConflict):
                await client.record_usage("calls", 2, idempotency_key="k")
            with pytest.raises(BudgetExceeded) as refused:
                await client.record_usage("calls", 5)
            check = await client.check_and_record("calls", 5, included_only=False)
            return refused.value, check

    refusal, check = asyncio.run(scenario())

    assert refusal.current_usage == Decimal("0.01") and refusal.requested == Decimal("0.05")
    assert not check.allowed and isinstance(check.error, BudgetExceeded)
    assert usage_count() == 1


def test_an_async_retry_sends_the_same_key_and_the_portal_records_once(portal, flaky_proxy):
    from billing_client import AsyncBillingClient

    flaky_proxy.spoil, flaky_proxy.retry_after = 2, "0"

    async def scenario():
        async with AsyncBillingClient(
            flaky_proxy.url, portal.key, backoff_base=0.05, timeout=TIMEOUT
        ) as client:
            return await client.record_usage("calls", 2)

    recorded = asyncio.run(scenario())

    assert recorded.duplicate
    assert [seen.portal_status for seen in flaky_proxy.seen] == [201, 200, 200]
    assert len({seen.headers["Idempotency-Key"] for seen in flaky_proxy.seen}) == 1
    assert usage_count() == 1


def test_the_tracker_works_as_an_async_context_manager(billing, portal):
    async def scenario():
        async with UsageTracker(billing, batch_size=5, flush_interval_seconds=60) as tracker:
            for index in range(12):
                tracker.track("calls", 1, user_id=f"user-{index}")
            await tracker.aflush()
        return tracker.get_stats()

    stats = asyncio.run(scenario())

    assert (stats["tracked"], stats["flushed"], stats["pending"]) == (12, 12, 0)
    assert usage_count() == 12
