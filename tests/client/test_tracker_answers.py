"""How UsageTracker reads the portal's answers to a batch: ``Retry-After`` followed within
the tracker's own limits (and never the end of its thread), a batch too large split in
halves with the same keys, and answers matched to events by their keys."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from billing_client import BillingClient, UsageTracker, ValidationFailed
from billing_client.endpoints import record_batch, usage_event
from billing_client.parsing import dumps

from tests.client.conftest import TIMEOUT, assert_counts_add_up, usage_count, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def keys_sent(proxy) -> list[list[str]]:
    """The event keys of each request the proxy saw, in order."""
    return [[event["event_id"] for event in body["events"]] for body in proxy.bodies]


@pytest.mark.thread_timeouts
def test_repeated_503s_with_retry_after_zero_are_still_sent_again_only_after_a_backoff(
    portal, flaky_proxy
):
    flaky_proxy.spoil, flaky_proxy.retry_after = 1000, "0"
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, flush_interval_seconds=0.05, backoff_base=0.2, backoff_max=0.4,
            flush_at_exit=False,
        ).start()  # fmt: skip
        for _ in range(5):
            tracker.track("calls", 1)
        wait_until(lambda: flaky_proxy.seen)
        time.sleep(2.0)
        attempts = len(flaky_proxy.seen)  # waits of 0.1-0.2 s, then 0.2-0.4 s: 12 at most
        flaky_proxy.spoil = 0
        wait_until(lambda: tracker.get_stats()["flushed"] == 5)
        tracker.stop()

    assert 3 <= attempts <= 13, attempts
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["duplicates"], stats["failed"]) == (5, 5, 0)
    assert usage_count() == 5


@pytest.mark.thread_timeouts
@pytest.mark.parametrize("retry_after", ["inf", "1e999", "Fri, 31 Dec 9999 23:59:59 GMT", "3600"])
def test_a_retry_after_beyond_backoff_max_is_cut_to_it_and_the_thread_lives_on(
    portal, flaky_proxy, retry_after
):
    flaky_proxy.spoil, flaky_proxy.retry_after = 2, retry_after
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, flush_interval_seconds=0.05, backoff_base=0.05, backoff_max=0.3,
            flush_at_exit=False,
        ).start()  # fmt: skip
        for _ in range(5):
            tracker.track("calls", 1)

        wait_until(lambda: tracker.get_stats()["flushed"] == 5, timeout=10)
        assert tracker.running
        tracker.stop()

    assert len(flaky_proxy.seen) == 3
    assert usage_count() == 5


def batch_bytes(count: int) -> int:
    """The size of a usage/batch body of ``count`` events like those the tests track."""
    now = datetime.now(UTC)
    events = [usage_event(product_id="calls", quantity=1, occurred_at=now) for _ in range(count)]
    return len(dumps(record_batch(events).body))


def test_a_batch_too_large_for_the_portal_is_sent_again_in_halves_with_the_same_keys(
    portal, flaky_proxy, settings
):
    settings.API_MAX_BODY_BYTES = (batch_bytes(8) + batch_bytes(16)) // 2
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(via_proxy, batch_size=16, flush_interval_seconds=60,
                               flush_at_exit=False)  # fmt: skip
        keys = [tracker.track("calls", 1) for _ in range(16)]

        assert tracker.flush() == 16

    assert [seen.answered for seen in flaky_proxy.seen] == [413, 200, 200]
    assert keys_sent(flaky_proxy) == [keys, keys[:8], keys[8:]]
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["batches"], stats["retried"]) == (
        16, 0, 3, 16,
    )  # fmt: skip
    assert "payload_too_large" in stats["last_error"]
    assert usage_count() == 16


def test_an_event_too_large_on_its_own_fails_and_the_others_go_through(
    portal, flaky_proxy, settings
):
    refused = []
    settings.API_MAX_BODY_BYTES = batch_bytes(4)
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, flush_interval_seconds=60, flush_at_exit=False,
            on_failure=lambda event, error: refused.append((event["event_id"], error)),
        )  # fmt: skip
        small = tracker.track("calls", 1)
        large = tracker.track("calls", 1, metadata={"note": "x" * batch_bytes(8)})

        assert tracker.flush() == 1

    assert keys_sent(flaky_proxy) == [[small, large], [small], [large]]
    [(key, error)] = refused
    assert key == large and isinstance(error, ValidationFailed) and error.status == 413
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["pending"]) == (1, 1, 0)
    assert_counts_add_up(stats)
    assert usage_count() == 1


def test_a_poison_event_answered_500_every_time_fails_alone_and_its_batch_lands(
    portal, flaky_proxy
):
    """An event the portal fails on (500) whenever it is sent: its batch is sent in halves
    until it is alone, then, the portal having taken the others, it fails for good
    instead of holding back the 19 good events or being sent for ever."""
    refused = []
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, batch_size=20, flush_interval_seconds=60, flush_at_exit=False,
            on_failure=lambda event, error: refused.append((event["event_id"], error)),
        )  # fmt: skip
        keys = [tracker.track("calls", 1) for _ in range(20)]
        flaky_proxy.poison = keys[7]
        flushes = 0
        while tracker.pending and flushes < 10:
            tracker.flush()
            flushes += 1

    assert tracker.pending == 0
    [(key, error)] = refused
    assert key == keys[7] and error.status == 500
    sent_with_poison = [batch for batch in keys_sent(flaky_proxy) if keys[7] in batch]
    # Whole (answered 500: kept), whole again, then in halves down to itself.
    assert [len(batch) for batch in sent_with_poison] == [20, 20, 10, 5, 2, 1]
    # ...and the rest, after it, in one batch again: 9 requests in all.
    assert len(flaky_proxy.seen) == 9, [len(batch) for batch in keys_sent(flaky_proxy)]
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["pending"]) == (19, 1, 0)
    assert_counts_add_up(stats)
    assert usage_count() == 19


def test_a_portal_failing_on_every_request_keeps_the_events_pending(portal, flaky_proxy):
    """500 for everything is the portal's failure, not the events': nothing is given up."""
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(via_proxy, batch_size=1, flush_interval_seconds=60,
                               flush_at_exit=False)  # fmt: skip
        flaky_proxy.poison = tracker.track("calls", 1)
        for _ in range(8):
            tracker.flush()

    assert len(flaky_proxy.seen) == 8
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["pending"]) == (0, 0, 1)
    assert "internal_error" in stats["last_error"]


def reversed_results(content: bytes) -> bytes:
    answer = json.loads(content)
    answer["results"].reverse()
    return json.dumps(answer).encode()


def test_answers_in_another_order_are_matched_to_events_by_their_keys(portal, flaky_proxy):
    refused = []
    flaky_proxy.rewrite = reversed_results
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, flush_interval_seconds=60, flush_at_exit=False,
            on_failure=lambda event, error: refused.append(event["event_id"]),
        )  # fmt: skip
        unknown = tracker.track("no-such-product", 1)
        tracker.track("calls", 1)
        tracker.track("calls", 2)

        assert tracker.flush() == 2

    assert refused == [unknown]
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["pending"]) == (2, 1, 0)
    assert usage_count() == 2


def test_answers_that_do_not_name_the_events_sent_leave_them_pending(portal, flaky_proxy):
    def other_keys(content: bytes) -> bytes:
        answer = json.loads(content)
        for result in answer["results"]:
            result["event_id"] = "someone-else"
        return json.dumps(answer).encode()

    flaky_proxy.rewrite = other_keys
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(via_proxy, flush_interval_seconds=60, flush_at_exit=False)
        tracker.track("calls", 1)
        tracker.track("calls", 1)

        assert tracker.flush() == 0
        assert tracker.pending == 2 and "malformed_response" in tracker.get_stats()["last_error"]
        flaky_proxy.rewrite = None
        assert tracker.flush() == 2

    stats = tracker.get_stats()
    assert (stats["flushed"], stats["duplicates"], stats["failed"]) == (2, 2, 0)
    assert usage_count() == 2
