"""A sample service that reports 10,000 usage events through UsageTracker, then asks the
portal how many it holds.

    python examples/track_10k.py --base-url http://127.0.0.1:8000 \\
        --api-key bp_org_demo0org_DemoOrganizationKeyNotForProductionUse01

It reads the portal's stats (``GET /api/v1/stats``) before and after, and exits with
status 1 unless the portal's record count grew by exactly ``--count``: every event
delivered, none twice. Stop and restart the portal while it runs, and the count is still
exact: the tracker keeps what it could not deliver and sends it again, each event with its
own idempotency key. (Other usage recorded for the same organisation while it runs would
be counted too.)
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

from billing_client import BillingClient, UsageTracker


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--organization-id", help="the organisation (with a service key)")
    parser.add_argument("--product", default="gateway-request", help="a product id")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--rate", type=float, default=0, help="events per second (0: as fast as possible)"
    )
    parser.add_argument(
        "--deliver-timeout", type=float, default=300, help="seconds to deliver what is left"
    )
    return parser.parse_args(argv)


def portal_count(client: BillingClient) -> int:
    # The stats count records by the UTC day they were made; a window around today
    # holds this run whatever the clocks.
    today = datetime.now(timezone.utc).date()
    stats = client.stats(start_date=today - timedelta(days=1), end_date=today + timedelta(days=1))
    return stats.total_billing_records


def progress(tracker: UsageTracker, label: str) -> None:
    stats = tracker.get_stats()
    error = f"  last error: {stats['last_error']}" if stats["last_error"] else ""
    print(
        f"  {label}  flushed {stats['flushed']:>6}  pending {stats['pending']:>6}  "
        f"retried {stats['retried']:>6}{error}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    run = uuid.uuid4().hex[:8]
    with BillingClient(
        args.base_url, args.api_key, organization_id=args.organization_id, max_retries=5
    ) as client:
        before = portal_count(client)
        print(f"run {run}: the portal holds {before} records; tracking {args.count} events")
        tracker = UsageTracker(
            client,
            batch_size=args.batch_size,
            flush_interval_seconds=1.0,
            max_pending=max(args.count, args.batch_size),
            on_full="block",
            backoff_max=5.0,
        )
        started = time.monotonic()
        step = max(args.count // 10, 1)
        with tracker:
            for index in range(1, args.count + 1):
                tracker.track(args.product, 1, user_id=f"track-10k-{run}")
                if args.rate:
                    time.sleep(1 / args.rate)
                if index % step == 0:
                    progress(tracker, f"tracked {index:>6}")
            tracked_in = time.monotonic() - started
            deadline = time.monotonic() + args.deliver_timeout
            while tracker.pending and time.monotonic() < deadline:
                time.sleep(0.5)
                progress(tracker, "delivering   ")
            tracker.stop(timeout=max(deadline - time.monotonic(), 1))
        elapsed = time.monotonic() - started
        stats = tracker.get_stats()
        print(f"tracker stats: {stats}")
        print(f"tracked in {tracked_in:.2f} s, delivered in {elapsed:.2f} s")

        after = portal_count(client)
        recorded = after - before
        print(f"the portal reports {after} records: {recorded} new (expected {args.count})")
    if recorded != args.count or stats["failed"] or stats["pending"]:
        print("MISMATCH", file=sys.stderr)
        return 1
    print("exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
