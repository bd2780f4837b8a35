"""Retries send the same request again, key and all, so the portal records it once."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from billing_client import BillingClient, Unavailable, __version__, usage_event

from tests.client.conftest import TIMEOUT, usage_count

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_retry_after_a_lost_answer_sends_the_same_key_and_the_portal_records_once(
    portal, flaky_proxy
):
    flaky_proxy.spoil, flaky_proxy.retry_after = 1, "1"  # the portal records, the client hears 503
    started = time.monotonic()
    with BillingClient(flaky_proxy.url, portal.key, max_retries=3, timeout=TIMEOUT) as client:
        recorded = client.record_usage("calls", 5)
    waited = time.monotonic() - started

    first, second = flaky_proxy.seen
    assert (first.portal_status, first.answered) == (201, 503)
    assert (second.portal_status, second.answered) == (200, 200)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["X-Request-ID"] == second.headers["X-Request-ID"]
    assert first.body == second.body
    assert json.loads(first.body)["event_id"] == first.headers["Idempotency-Key"]
    assert first.headers["User-Agent"].startswith(f"billing-portal-client/{__version__} ")
    assert recorded.duplicate is True and recorded.total_cost == Decimal("0.05")
    assert waited >= 1.0  # Retry-After: 1
    assert usage_count() == 1


def test_a_batch_retried_after_a_timeout_is_counted_once(portal, flaky_proxy):
    flaky_proxy.spoil, flaky_proxy.mode, flaky_proxy.silence_seconds = 1, "silence", 2.0
    events = [usage_event(product_id="calls", quantity=1) for _ in range(20)]
    with BillingClient(flaky_proxy.url, portal.key, timeout=0.5, backoff_base=0.05) as client:
        answer = client.record_batch(events)

    first, second = flaky_proxy.seen
    assert first.portal_status == 200 and first.body == second.body
    assert (answer.accepted, answer.duplicates) == (0, 20)
    assert usage_count() == 20


def test_the_last_failure_is_raised_once_the_retries_are_spent(portal, flaky_proxy):
    flaky_proxy.spoil, flaky_proxy.retry_after = 10, "0"
    client = BillingClient(flaky_proxy.url, portal.key, max_retries=2, timeout=TIMEOUT)
    with client, pytest.raises(Unavailable) as failed:
        client.record_usage("calls", 1)

    assert failed.value.status == 503
    assert len(flaky_proxy.seen) == 3
    assert len({seen.headers["Idempotency-Key"] for seen in flaky_proxy.seen}) == 1
    assert usage_count() == 1


def test_creating_a_budget_is_not_sent_again_after_a_lost_answer(portal, flaky_proxy):
    from apps.budgets.models import Budget

    flaky_proxy.spoil, flaky_proxy.retry_after = 1, "0"
    client = BillingClient(flaky_proxy.url, portal.key, max_retries=3, timeout=TIMEOUT)
    with client, pytest.raises(Unavailable):
        client.create_budget(name="cap", limit=Decimal(10))

    assert len(flaky_proxy.seen) == 1
    assert Budget.objects.count() == 1


def test_a_portal_that_does_not_answer_is_unavailable(portal, tcp_proxy):
    tcp_proxy.stop()
    started = time.monotonic()
    client = BillingClient(tcp_proxy.url, portal.key, max_retries=2, backoff_base=0.05)
    with client, pytest.raises(Unavailable) as failed:
        client.stats()

    assert failed.value.code == "connect_error" and failed.value.status is None
    assert time.monotonic() - started < 2


def test_a_throttled_call_waits_as_retry_after_says_and_goes_through(portal, settings):
    settings.API_THROTTLE_RATE = "1/s"
    with BillingClient(portal.url, portal.key, max_retries=3, timeout=TIMEOUT) as client:
        for _ in range(3):
            client.record_usage("calls", 1)

    assert usage_count() == 3
