"""Ten thousand events through UsageTracker, with the portal gone in the middle of the
run: the portal's stats count exactly ten thousand."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from billing_client import BillingClient, UsageTracker

from tests.client.conftest import assert_counts_add_up, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "clients/python/examples/track_10k.py"
COUNT = 10_000


@pytest.mark.thread_timeouts  # the tracker's retry waits out its backoff in its thread
def test_ten_thousand_events_across_a_portal_restart_are_counted_exactly_once(
    portal, tcp_proxy, capsys
):
    started = time.monotonic()
    with BillingClient(tcp_proxy.url, portal.key, timeout=10) as via_proxy:
        tracker = UsageTracker(
            via_proxy, batch_size=1000, flush_interval_seconds=0.2, max_pending=COUNT,
            backoff_base=0.1, backoff_max=0.5, flush_at_exit=False,
        ).start()  # fmt: skip
        for index in range(COUNT):
            tracker.track("gateway-request", 1, user_id=f"user-{index % 50}")
            if index == COUNT // 2:
                # Down while the portal answers a batch it has just recorded.
                tcp_proxy.lose_next_answer()
                assert tcp_proxy.stopped.wait(30)
        wait_until(lambda: tracker.get_stats()["retried"] > 0)
        down = tracker.get_stats()
        tcp_proxy.start()
        tracker.stop(timeout=60)
    elapsed = time.monotonic() - started

    stats = tracker.get_stats()
    with BillingClient(portal.url, portal.key) as client:
        reported = client.stats().total_billing_records
    with capsys.disabled():
        print(f"\n10,000 events across a restart: {elapsed:.1f} s; down: {down}; end: {stats}")
    assert down["pending"] > 0
    assert stats["duplicates"] > 0  # the batch whose answer was lost, sent again
    assert (stats["tracked"], stats["flushed"], stats["pending"]) == (COUNT, COUNT, 0)
    assert (stats["failed"], stats["dropped"]) == (0, 0)
    assert_counts_add_up(down)
    assert reported == COUNT


def test_the_example_script_tracks_ten_thousand_and_finds_them_all(portal, capsys):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--base-url", portal.url, "--api-key", portal.key,
         "--product", "gateway-request", "--count", str(COUNT), "--batch-size", "1000"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    with capsys.disabled():
        print(f"\ntrack_10k.py: {elapsed:.1f} s\n{done.stdout}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"the portal reports {COUNT} records: {COUNT} new" in done.stdout
    from apps.usage.models import UsageEvent

    assert UsageEvent.objects.count() == COUNT
