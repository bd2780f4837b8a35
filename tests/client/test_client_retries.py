"""Retries send the same request again, key and all, so the portal records it once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from billing_client import BillingClient, Unavailable, __version__, usage_event
from billing_client.retrying import parse_retry_after

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
    # The first answer is held back well past the client's timeout; on a loaded machine a
    # retry may time out too, so the test asks for "at least one retry", each the same.
    flaky_proxy.spoil, flaky_proxy.mode, flaky_proxy.silence_seconds = 1, "silence", 6.0
    events = [usage_event(product_id="calls", quantity=1) for _ in range(20)]
    with BillingClient(flaky_proxy.url, portal.key, timeout=3.0, backoff_base=0.05) as client:
        answer = client.record_batch(events)

    seen = flaky_proxy.seen
    assert len(seen) >= 2
    assert all(s.portal_status == 200 and s.body == seen[0].body for s in seen)  # same keys
    assert len({s.headers["X-Request-ID"] for s in seen}) == 1
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


def test_a_throttled_call_waits_as_retry_after_says_and_goes_through(portal, settings, flaky_proxy):
    settings.API_THROTTLE_RATE = "1/s"
    started = time.monotonic()
    with BillingClient(flaky_proxy.url, portal.key, max_retries=3, timeout=TIMEOUT) as client:
        for _ in range(3):
            client.record_usage("calls", 1)
    waited = time.monotonic() - started

    throttled = [seen for seen in flaky_proxy.seen if seen.answered == 429]
    assert throttled, [seen.answered for seen in flaky_proxy.seen]
    assert waited >= 1.0  # each 429 came with a Retry-After of a second or more
    assert [seen.answered for seen in flaky_proxy.seen if seen.answered != 429] == [201] * 3
    assert usage_count() == 3


@pytest.mark.parametrize("value", ["inf", "-inf", "1e999", "nan", "Infinity"])
def test_a_retry_after_that_is_no_finite_number_is_ignored(value):
    assert parse_retry_after(value) is None


def test_a_retry_after_in_seconds_or_as_a_date_is_read():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0
    far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=now)
    assert far is not None and far > 1e10  # finite: the caller applies its own limit
