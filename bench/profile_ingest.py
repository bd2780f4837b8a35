"""Where the time of one enforced event and of one 1,000-event batch goes, in-process
(Django's test client, the portal's settings and database): pricing, enforcement (budgets,
wallet, credits), SQL, serialising, and the rest of the request.

    manage.py shell --no-imports -c "from bench.profile_ingest import main; main('<key>')"
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time
import uuid

from django.db import connection
from django.test import Client

from billing_portal import warm

# Buckets: the functions whose cumulative time is the bucket's (none calls another's).
ENFORCEMENT = "apps/budgets/enforcement.py"
WALLETS = "apps/customers/wallets.py"
INGESTION = "apps/usage/ingestion.py"
PARSING = "apps/usage/api/parsing.py"
BUCKETS = {
    "pricing": [("apps/pricing/", name) for name in (
        "quote_with_sheet", "resolve_quantities", "price_sheet", "effective_plan",
        "active_products_by_code")],
    # Deciding in memory and building the hot statement (its SQL is the next bucket's).
    "enforcement": [(ENFORCEMENT, name) for name in (
        "lock", "from_snapshot", "check", "apply", "write", "hot_part")]
        + [(WALLETS, name) for name in (
            "lock", "from_snapshot", "take_credits", "take_wallet", "hot_part")]
        + [(INGESTION, name) for name in (
            "_lock_counters", "_standing", "_standing_from_snapshot",
            "_counters_from_snapshot", "_counters_part", "_rollup_part")],
    "hot statement": [("apps/core/hot_rows.py", "take")],
    "parsing": [(PARSING, "parse_event"), (PARSING, "parse_batch"),
                ("rest_framework/request.py", "_parse")],
    "serialising": [("apps/usage/api/presenters.py", "present_record"),
                    ("rest_framework/response.py", "rendered_content")],
}  # fmt: skip


class SqlClock:
    def __init__(self) -> None:
        self.seconds, self.count = 0.0, 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


def event(n: int, run: str) -> dict:
    kind = n % 3
    base = {"event_id": f"profile-{run}-{n}", "user_id": f"user{n % 50}"}
    if kind == 0:
        return {**base, "product_id": "gpt-4o-mini",
                "usage_details": {"input_tokens": 1200 + n % 97, "output_tokens": 300}}  # fmt: skip
    if kind == 1:
        return {**base, "product_id": "agent-run", "usage_amount": 1}
    return {**base, "product_id": "gateway-request", "usage_amount": 1}


def profile(label: str, post, calls: int, events_per_call: int) -> None:
    clock = SqlClock()
    profiler = cProfile.Profile()
    with connection.execute_wrapper(clock):
        started = time.perf_counter()
        profiler.enable()
        for n in range(calls):
            post(n)
        profiler.disable()
        wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    per = 1000 / calls  # ms per call
    print(f"\n--- profile: {label} ({calls} calls, {events_per_call} event(s) each) ---")
    print(f"wall            {wall * per:8.2f} ms a call  (in-process, profiler on)")
    print(
        f"SQL             {clock.seconds * per:8.2f} ms"
        f"  ({clock.count / calls:.1f} statements a call)"
    )
    profiled = sum(
        row[3] for key, row in stats.stats.items() if key[2] == "post" and "apps/" in key[0]
    )
    for bucket, functions in BUCKETS.items():
        seconds = sum(
            row[3]
            for (path, _, name), row in stats.stats.items()
            if any(part in path and name == wanted for part, wanted in functions)
        )
        print(f"{bucket:15} {seconds * per:8.2f} ms")
    print(
        f"view (post)     {profiled * per:8.2f} ms  (the view's own post: all but the"
        " request machinery)"
    )
    print("top functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


def main(key: str) -> None:
    run = uuid.uuid4().hex[:8]
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_HOST": "127.0.0.1"}

    def single(n: int) -> None:
        response = client.post("/api/v1/usage/record", json.dumps(event(n, run)),
                               content_type="application/json", **headers)  # fmt: skip
        assert response.status_code == 201, response.content[:300]

    def batch(n: int) -> None:
        events = [event(n * 1000 + i + 10**6, run) for i in range(1000)]
        response = client.post("/api/v1/usage/batch", json.dumps({"events": events}),
                               content_type="application/json", **headers)  # fmt: skip
        assert response.status_code == 200, response.content[:300]

    for n in range(20):  # warm: caches, connections, code
        single(10**7 + n)
    warm.serve()  # the server's collector settings (``billing_portal.warm``)
    profile("one enforced single event", single, 300, 1)
    batch(99)
    profile("one enforced 1,000-event batch", batch, 3, 1000)
