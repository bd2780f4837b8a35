"""UsageTracker against the portal: batches, stats, the full-queue policies, failures
counted apart from what waits, delivery on stop and at exit, and a portal that goes away."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest
from billing_client import BillingClient, NotFound, TrackerFull, UsageTracker, ValidationFailed

from tests.client.conftest import TIMEOUT, assert_counts_add_up, usage_count, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def quiet_tracker(billing, **options) -> UsageTracker:
    """A tracker that sends only when asked (no thread, no flush at exit)."""
    options.setdefault("flush_interval_seconds", 60)
    return UsageTracker(billing, flush_at_exit=False, **options)


def test_flush_sends_the_queue_in_batches_and_returns_the_count(billing, portal):
    tracker = quiet_tracker(billing, batch_size=10)
    keys = [tracker.track("calls", 1, user_id="ann") for _ in range(25)]

    flushed = tracker.flush()

    assert flushed == 25
    assert tracker.get_stats() == {
        "tracked": 25, "flushed": 25, "duplicates": 0, "failed": 0, "pending": 0,
        "retried": 0, "dropped": 0, "batches": 3, "last_error": None,
    }  # fmt: skip
    from apps.usage.models import UsageEvent

    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == set(keys)


def test_the_background_thread_sends_a_full_batch_without_being_asked(billing, portal):
    with UsageTracker(billing, batch_size=10, flush_interval_seconds=60) as tracker:
        for _ in range(20):
            tracker.track("calls", 1)
        wait_until(lambda: tracker.get_stats()["flushed"] == 20)
        assert tracker.get_stats()["batches"] == 2

    assert usage_count() == 20


@pytest.mark.thread_timeouts
def test_the_background_thread_sends_what_waited_the_flush_interval(billing, portal):
    with UsageTracker(billing, batch_size=100, flush_interval_seconds=0.2) as tracker:
        tracker.track("calls", 1)
        tracker.track("calls", 2)
        wait_until(lambda: tracker.get_stats()["flushed"] == 2, timeout=5)

    assert usage_count() == 2


def test_the_helpers_record_tokens_executions_api_calls_and_storage(billing, portal):
    from apps.usage.models import UsageEvent

    tracker = quiet_tracker(billing)
    tracker.track_tokens("gpt-4o-mini", input_tokens=1200, output_tokens=300, user_id="ann")
    tracker.track_execution(workflow_id="wf-7")
    tracker.track_api_call("/v1/search", "GET", metadata={"status": 200})
    tracker.track_storage(Decimal("10.5"), storage_type="checkpoint")

    assert tracker.flush() == 4

    events = {e.product.code: e for e in UsageEvent.objects.select_related("product")}
    tokens = events["gpt-4o-mini"]
    assert tokens.quantities == {"input_tokens": "1200", "output_tokens": "300"}
    assert tokens.user_id == "ann"
    assert events["agent-run"].usage_details == {"workflow_id": "wf-7"}
    assert events["gateway-request"].usage_details == {
        "endpoint": "/v1/search", "method": "GET", "status": 200,
    }  # fmt: skip
    assert events["object-storage"].quantity == Decimal("10.5")


def test_a_full_tracker_drops_the_oldest_by_default_and_counts_them(billing, portal):
    from apps.usage.models import UsageEvent

    tracker = quiet_tracker(billing, batch_size=5, max_pending=5)
    keys = [tracker.track("calls", 1) for _ in range(8)]

    stats = tracker.get_stats()
    assert (stats["tracked"], stats["pending"], stats["dropped"]) == (8, 5, 3)
    assert_counts_add_up(stats)
    assert tracker.flush() == 5
    assert_counts_add_up(tracker.get_stats())
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == set(keys[3:])


def test_a_full_tracker_can_refuse_the_new_event_instead(billing, portal):
    tracker = quiet_tracker(billing, batch_size=3, max_pending=3, on_full="raise")
    for _ in range(3):
        tracker.track("calls", 1)

    with pytest.raises(TrackerFull):
        tracker.track("calls", 1)

    stats = tracker.get_stats()
    assert (stats["tracked"], stats["pending"], stats["dropped"]) == (3, 3, 0)
    assert_counts_add_up(stats)


def test_a_full_tracker_can_make_the_caller_wait_for_room(billing, portal):
    with UsageTracker(
        billing, batch_size=5, max_pending=10, on_full="block", flush_interval_seconds=0.05
    ) as tracker:
        for _ in range(100):
            tracker.track("calls", 1)
            assert tracker.pending <= 10

    stats = tracker.get_stats()
    assert (stats["flushed"], stats["dropped"], stats["pending"]) == (100, 0, 0)
    assert_counts_add_up(stats)
    assert usage_count() == 100


def test_a_blocked_caller_gives_up_after_the_block_timeout(billing, portal):
    tracker = quiet_tracker(
        billing, batch_size=2, max_pending=2, on_full="block", block_timeout=0.1
    )
    tracker.track("calls", 1)
    tracker.track("calls", 1)

    with pytest.raises(TrackerFull):
        tracker.track("calls", 1)  # no thread running to make room
    assert tracker.get_stats()["tracked"] == 2


def test_a_blocked_caller_waits_thirty_seconds_at_most_unless_told_otherwise(billing):
    assert UsageTracker(billing, flush_at_exit=False).block_timeout == 30.0
    forever = UsageTracker(billing, block_timeout=None, flush_at_exit=False)
    assert forever.block_timeout is None


def test_events_the_portal_refuses_are_failed_and_never_sent_again(billing, portal):
    refused = []
    tracker = quiet_tracker(
        billing, batch_size=10, on_failure=lambda event, error: refused.append((event, error))
    )
    tracker.track("calls", 1)
    bad = tracker.track("no-such-product", 1)
    tracker.track("calls", 1)

    assert tracker.flush() == 2
    assert tracker.flush() == 0

    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["pending"], stats["batches"]) == (2, 1, 0, 1)
    assert_counts_add_up(stats)
    assert "product_not_found" in stats["last_error"]
    [(event, error)] = refused
    assert event["event_id"] == bad and isinstance(error, NotFound)
    assert usage_count() == 2


def test_a_batch_refused_for_its_key_stays_pending_to_be_sent_again(portal):
    refused = []
    with BillingClient(portal.url, "bp_org_nothing0_NoSuchKeyAtAll000000000000000000000") as bad:
        tracker = quiet_tracker(bad, on_failure=lambda event, error: refused.append(error))
        tracker.track("calls", 1)
        tracker.track("calls", 1)

        assert tracker.flush() == 0

    stats = tracker.get_stats()
    assert (stats["failed"], stats["pending"], stats["batches"]) == (0, 2, 1)
    assert "invalid_api_key" in stats["last_error"]
    assert refused == []  # a key being rotated loses nothing


def test_the_key_refused_then_accepted_delivers_what_waited(portal, flaky_proxy):
    flaky_proxy.mode, flaky_proxy.spoil = "refuse", 2
    flaky_proxy.refuse_status, flaky_proxy.refuse_code = 401, "api_key_revoked"
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = quiet_tracker(via_proxy, backoff_base=0.05, backoff_max=0.2)
        keys = [tracker.track("calls", 1) for _ in range(3)]

        assert tracker.flush(timeout=20) == 3

    stats = tracker.get_stats()
    assert (stats["flushed"], stats["failed"], stats["pending"], stats["batches"]) == (3, 0, 0, 3)
    assert [[e["event_id"] for e in body["events"]] for body in flaky_proxy.bodies] == [keys] * 3
    assert usage_count() == 3


def test_a_batch_refused_as_malformed_as_a_whole_fails_its_events(portal, flaky_proxy):
    refused = []
    flaky_proxy.mode, flaky_proxy.spoil = "refuse", 1  # 422 validation_error
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = quiet_tracker(via_proxy, on_failure=lambda event, error: refused.append(error))
        tracker.track("calls", 1)
        tracker.track("calls", 1)

        assert tracker.flush(timeout=10) == 0

    stats = tracker.get_stats()
    assert (stats["failed"], stats["pending"], stats["batches"]) == (2, 0, 1)
    assert_counts_add_up(stats)
    assert len(refused) == 2 and all(isinstance(error, ValidationFailed) for error in refused)
    assert usage_count() == 0


def test_stop_delivers_what_is_pending(billing, portal):
    tracker = UsageTracker(billing, batch_size=100, flush_interval_seconds=60).start()
    for _ in range(7):
        tracker.track("calls", 1)

    assert tracker.stop() == 7
    assert not tracker.running and tracker.pending == 0
    assert usage_count() == 7


def test_a_tracker_made_from_a_url_and_key_delivers_on_leaving_its_block(portal):
    with UsageTracker(base_url=portal.url, api_key=portal.key, flush_interval_seconds=60) as t:
        t.track_execution(workflow_id="wf-1")

    assert t.client.is_closed and t.get_stats()["flushed"] == 1
    assert usage_count() == 1


@pytest.mark.slow
def test_what_is_pending_when_the_interpreter_exits_is_delivered(portal):
    script = textwrap.dedent(
        f"""
        from billing_client import UsageTracker

        tracker = UsageTracker(base_url={portal.url!r}, api_key={portal.key!r},
                               batch_size=100, flush_interval_seconds=3600)
        tracker.start()
        for index in range(12):
            tracker.track("calls", 1, user_id=f"user-{{index}}")
        print(tracker.get_stats()["pending"])
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "12"  # nothing sent before the exit
    assert usage_count() == 12


@pytest.mark.thread_timeouts
@pytest.mark.slow
def test_events_tracked_while_the_portal_is_down_are_delivered_after_exactly_once(
    portal, tcp_proxy
):
    with BillingClient(tcp_proxy.url, portal.key, timeout=5) as via_proxy:
        tracker = UsageTracker(
            via_proxy, batch_size=10, flush_interval_seconds=0.05, backoff_base=0.05,
            backoff_max=0.3, flush_at_exit=False,
        ).start()  # fmt: skip
        for _ in range(30):
            tracker.track("calls", 1)
        wait_until(lambda: tracker.get_stats()["flushed"] == 30)

        tcp_proxy.stop()
        for _ in range(25):
            tracker.track("calls", 1)
        wait_until(lambda: tracker.get_stats()["retried"] >= 25)
        down = tracker.get_stats()
        tcp_proxy.start()
        wait_until(lambda: tracker.pending == 0)
        tracker.stop()

    assert down["pending"] == 25 and down["failed"] == 0
    assert "connect_error" in down["last_error"]
    assert_counts_add_up(down)
    stats = tracker.get_stats()
    assert (stats["tracked"], stats["flushed"], stats["failed"], stats["dropped"]) == (55, 55, 0, 0)
    assert usage_count() == 55


def test_a_flush_retried_after_a_timeout_counts_each_event_once(portal, flaky_proxy):
    # The first answer is held back well past the client's timeout; on a loaded machine a
    # retry may time out too, so the test asks for "at least one retry", each the same.
    flaky_proxy.spoil, flaky_proxy.mode, flaky_proxy.silence_seconds = 1, "silence", 6.0
    with BillingClient(flaky_proxy.url, portal.key, timeout=3.0) as via_proxy:
        tracker = quiet_tracker(via_proxy, batch_size=50, backoff_base=0.05)
        for _ in range(40):
            tracker.track("calls", 1)

        flushed = tracker.flush(timeout=60)

    seen = flaky_proxy.seen
    assert len(seen) >= 2
    assert all(s.portal_status == 200 and s.body == seen[0].body for s in seen)
    stats = tracker.get_stats()
    assert flushed == 40
    assert (stats["flushed"], stats["duplicates"]) == (40, 40)
    assert stats["retried"] >= 40  # the whole batch, once or more
    assert_counts_add_up(stats)
    assert usage_count() == 40
