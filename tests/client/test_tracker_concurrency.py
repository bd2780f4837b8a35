"""UsageTracker shared between threads: tracking from many at once, flushing while the
background thread flushes, ``on_failure`` flushing or stopping the tracker, and a full
queue whose every event is in flight. Each event is sent once (or counted as the
duplicate it is), and the counts add up."""

from __future__ import annotations

import threading

import pytest
from billing_client import BillingClient, UsageTracker

from tests.client.conftest import TIMEOUT, assert_counts_add_up, usage_count, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def sent_keys(proxy) -> list[str]:
    return [event["event_id"] for body in proxy.bodies for event in body["events"]]


def test_events_tracked_from_many_threads_at_once_are_each_counted_once(billing, portal):
    threads, per_thread = 8, 250
    keys: list[str] = []
    tracker = UsageTracker(
        billing, batch_size=50, flush_interval_seconds=0.05, flush_at_exit=False
    ).start()

    def track_many() -> None:
        mine = [tracker.track("calls", 1) for _ in range(per_thread)]
        keys.extend(mine)

    workers = [threading.Thread(target=track_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    tracker.stop(timeout=60)

    stats = tracker.get_stats()
    total = threads * per_thread
    assert len(set(keys)) == total
    assert (stats["tracked"], stats["flushed"], stats["pending"]) == (total, total, 0)
    assert (stats["failed"], stats["dropped"], stats["duplicates"]) == (0, 0, 0)
    assert usage_count() == total


def test_a_flush_while_the_background_thread_flushes_sends_each_event_once(portal, flaky_proxy):
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, batch_size=7, flush_interval_seconds=0.01, flush_at_exit=False
        ).start()
        for _ in range(30):
            for _ in range(10):
                tracker.track("calls", 1)
            tracker.flush()
        tracker.stop(timeout=30)

    sent = sent_keys(flaky_proxy)
    assert len(sent) == len(set(sent)) == 300  # no event went out twice
    stats = tracker.get_stats()
    assert (stats["flushed"], stats["duplicates"], stats["pending"]) == (300, 0, 0)
    assert stats["batches"] == len(flaky_proxy.seen)
    assert usage_count() == 300


@pytest.mark.thread_timeouts
def test_on_failure_may_flush_the_tracker_from_the_background_thread(billing, portal):
    flushed_by_handler = []

    def handler(event, error) -> None:
        tracker.track("calls", 1)
        flushed_by_handler.append(tracker.flush(timeout=10))

    tracker = UsageTracker(
        billing, flush_interval_seconds=0.05, on_failure=handler, flush_at_exit=False
    ).start()
    tracker.track("no-such-product", 1)

    wait_until(lambda: flushed_by_handler == [1])
    tracker.stop()

    stats = tracker.get_stats()
    assert (stats["tracked"], stats["flushed"], stats["failed"]) == (2, 1, 1)
    assert usage_count() == 1


def test_on_failure_may_stop_the_tracker_during_the_callers_flush(billing, portal):
    stopped = []
    tracker = UsageTracker(
        billing, flush_interval_seconds=60, flush_at_exit=False,
        on_failure=lambda event, error: stopped.append(tracker.stop(timeout=10)),
    ).start()  # fmt: skip
    tracker.track("no-such-product", 1)
    tracker.track("calls", 1)
    flushing = threading.Thread(target=tracker.flush)

    flushing.start()
    flushing.join(timeout=20)

    assert not flushing.is_alive(), "flush() and stop() from on_failure deadlocked"
    assert stopped == [0] and not tracker.running
    assert tracker.get_stats()["flushed"] == 1


def test_a_full_tracker_whose_events_are_all_in_flight_drops_the_new_one_and_counts_it(
    portal, flaky_proxy
):
    from apps.usage.models import UsageEvent

    flaky_proxy.mode, flaky_proxy.spoil, flaky_proxy.silence_seconds = "silence", 1, 3
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, batch_size=5, max_pending=5, flush_interval_seconds=60, flush_at_exit=False
        )
        for _ in range(5):
            tracker.track("calls", 1)
        flushing = threading.Thread(target=tracker.flush)
        flushing.start()
        wait_until(lambda: len(flaky_proxy.seen) == 1)  # all five in flight

        dropped = tracker.track("calls", 1)

        stats = tracker.get_stats()
        assert (stats["tracked"], stats["pending"], stats["dropped"]) == (6, 5, 1)
        assert_counts_add_up(stats)
        flushing.join(timeout=30)
        assert tracker.flush(timeout=30) == 5

    stats = tracker.get_stats()
    assert (stats["tracked"], stats["flushed"], stats["dropped"], stats["pending"]) == (6, 5, 1, 0)
    assert_counts_add_up(stats)
    assert not UsageEvent.objects.filter(idempotency_key=dropped).exists()
    assert usage_count() == 5
