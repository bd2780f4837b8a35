"""UsageTracker keeps its time limits: ``stop(timeout)``, ``flush(timeout)`` and the flush at
interpreter exit return within their timeout when the portal is down or never answers,
even behind a request already under way; a thread left finishing a request after such a
stop ends on its own when the tracker is started again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
from billing_client import BillingClient, UsageTracker

from tests.client.conftest import TIMEOUT, assert_counts_add_up, usage_count, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MARGIN = 0.75  # scheduling on a loaded machine; far below any request's own timeout
THREAD_NAME = "billing-usage-tracker"


def silent(proxy, seconds: float, times: int = 1) -> None:
    """The next ``times`` requests reach the portal, and their answers are held back for
    ``seconds``, well past the tracker's deadlines but not the client's own timeout."""
    proxy.mode, proxy.spoil, proxy.silence_seconds = "silence", times, seconds


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_stop_returns_within_its_timeout_when_the_portal_is_down(portal, tcp_proxy):
    tcp_proxy.stop()
    with BillingClient(tcp_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, flush_interval_seconds=60, backoff_base=0.05, backoff_max=0.2,
            flush_at_exit=False,
        ).start()  # fmt: skip
        for _ in range(10):
            tracker.track("calls", 1)

        flushed, elapsed = timed(lambda: tracker.stop(timeout=1.0))

    assert flushed == 0 and elapsed <= 1.0 + MARGIN
    stats = tracker.get_stats()
    assert stats["pending"] == 10 and stats["batches"] >= 2  # it tried again until the time
    assert "connect_error" in stats["last_error"]
    assert_counts_add_up(stats)


def test_stop_gives_a_request_only_the_time_left_when_the_portal_is_silent(portal, flaky_proxy):
    silent(flaky_proxy, seconds=8)
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(via_proxy, flush_interval_seconds=60, flush_at_exit=False)
        for _ in range(5):
            tracker.track("calls", 1)

        flushed, elapsed = timed(lambda: tracker.stop(timeout=1.0))
        assert flushed == 0 and elapsed <= 1.0 + MARGIN
        assert tracker.pending == 5 and "timeout" in tracker.get_stats()["last_error"]

        assert tracker.flush(timeout=30) == 5  # the portal held them all along

    stats = tracker.get_stats()
    assert (stats["flushed"], stats["duplicates"], stats["pending"]) == (5, 5, 0)
    assert usage_count() == 5


@pytest.mark.thread_timeouts
def test_stop_does_not_wait_behind_the_background_threads_request(portal, flaky_proxy):
    silent(flaky_proxy, seconds=4)
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(via_proxy, flush_interval_seconds=0.05, flush_at_exit=False)
        tracker.start()
        for _ in range(5):
            tracker.track("calls", 1)
        wait_until(lambda: len(flaky_proxy.seen) == 1)  # the thread waits for its answer

        flushed, elapsed = timed(lambda: tracker.stop(timeout=1.0))

        assert flushed == 0 and elapsed <= 1.0 + MARGIN
        assert tracker.pending == 5 and not tracker.running
        assert tracker.flush(timeout=30) == 5

    assert usage_count() == 5


@pytest.mark.thread_timeouts
def test_a_flush_with_a_timeout_does_not_wait_behind_another_flush(portal, flaky_proxy):
    silent(flaky_proxy, seconds=4)
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(via_proxy, flush_interval_seconds=60, flush_at_exit=False)
        for _ in range(5):
            tracker.track("calls", 1)
        other = threading.Thread(target=tracker.flush)  # no timeout: the client's
        other.start()
        wait_until(lambda: len(flaky_proxy.seen) == 1)

        flushed, elapsed = timed(lambda: tracker.flush(timeout=0.5))

        assert flushed == 0 and elapsed <= 0.5 + MARGIN
        other.join(timeout=30)
        assert tracker.flush(timeout=30) == 5

    assert usage_count() == 5


@pytest.mark.thread_timeouts
def test_start_after_a_stop_that_timed_out_leaves_one_background_thread(portal, flaky_proxy):
    before = {t for t in threading.enumerate() if t.name == THREAD_NAME}

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == THREAD_NAME} - before

    silent(flaky_proxy, seconds=3)
    with BillingClient(flaky_proxy.url, portal.key, timeout=TIMEOUT) as via_proxy:
        tracker = UsageTracker(
            via_proxy, batch_size=10, flush_interval_seconds=0.05, backoff_base=0.05,
            flush_at_exit=False,
        ).start()  # fmt: skip
        for _ in range(5):
            tracker.track("calls", 1)
        wait_until(lambda: len(flaky_proxy.seen) == 1)
        [first] = ours()
        tracker.stop(timeout=0.2)  # the thread is still waiting for its answer

        tracker.start()
        [second] = ours() - {first}
        wait_until(lambda: not first.is_alive(), timeout=30)  # ends after its request
        for _ in range(5):
            tracker.track("calls", 1)
        wait_until(lambda: tracker.get_stats()["flushed"] == 10, timeout=30)

        assert ours() == {second} and tracker.running
        tracker.stop()

    stats = tracker.get_stats()
    assert (stats["tracked"], stats["flushed"], stats["duplicates"]) == (10, 10, 5)
    assert_counts_add_up(stats)
    assert usage_count() == 10


@pytest.mark.slow
def test_the_flush_at_exit_ends_within_exit_timeout_when_the_portal_is_silent(portal, flaky_proxy):
    silent(flaky_proxy, seconds=10, times=100)
    script = textwrap.dedent(
        f"""
        import atexit, time
        from billing_client import UsageTracker

        exiting = []
        # Registered first, so it runs after the tracker's flush (atexit runs last first).
        atexit.register(lambda: print(f"{{time.monotonic() - exiting[0]:.3f}}"))
        tracker = UsageTracker(base_url={flaky_proxy.url!r}, api_key={portal.key!r},
                               flush_interval_seconds=3600, exit_timeout=1.5,
                               backoff_base=0.05)
        tracker.start()
        for _ in range(3):
            tracker.track("calls", 1)
        exiting.append(time.monotonic())
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) <= 1.5 + MARGIN, done.stderr
    assert "stopped with 3 events not delivered" in done.stderr
