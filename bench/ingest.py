"""Ingestion benchmark: the portal under gunicorn against raw PostgreSQL inserts, one run.

    .venv/bin/python bench/ingest.py [--seconds 15] [--batches 40] [--rate 100]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/billing_bench;
the database is created and migrated on first use) and Redis (REDIS_URL, default
redis://127.0.0.1:6379/0). Everything runs on 127.0.0.1, bounded in count and time.

It measures, in this order:
  1. single posts at a fixed rate (default 100/s): p50/p99/max latency from the scheduled
     send time (no coordinated omission);
  2. single posts, closed loop, 8 clients: events/s;
  3. 1,000-event batches, closed loop, 2 clients: events/s, priced and stored;
  4. the raw baseline on the same database: the same rows into a table of the same shape
     with psycopg multi-row INSERT (1,000 rows a statement) and with COPY.
and prints each figure and the ratio of batch ingestion to raw INSERT.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_bench"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
HOST = "127.0.0.1"


def say(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        CACHE_KEY_PREFIX="billing_bench",
        # The throttle stays on (its Redis round trips are part of every request) with a
        # limit the benchmark never reaches.
        API_THROTTLE_RATE="100000000/min",
        LOG_LEVEL="WARNING",
        DJANGO_DEBUG="false",
    )
    return env


def prepare_database() -> tuple[str, str]:
    """Creates and migrates the bench database if needed; returns (organisation key, slug)."""
    import psycopg

    admin_url = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")
        # Start from a clean WAL: a checkpoint owed to an earlier run's writes would
        # otherwise land in this run's measurements.
        conn.execute("CHECKPOINT")
    say("migrating the bench database (the first time takes about a minute)...")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=environment(), check=True,
    )  # fmt: skip
    analyze()
    script = """
from decimal import Decimal
from apps.customers.models import Organization, ApiKey
from apps.customers import services
from apps.pricing.demo import seed_catalog
plans = seed_catalog()
org, _ = Organization.objects.update_or_create(
    slug="bench", defaults={"name": "Bench", "billing_email": "bench@example.com",
                            "plan": plans["pro"], "time_zone": "UTC"})
ApiKey.objects.filter(name="bench").update(revoked_at="2000-01-01T00:00:00Z")
print(services.issue_api_key(name="bench", organization=org).raw_key)
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT, env=environment(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1], "bench"


def analyze() -> None:
    """Fresh planner statistics, as autovacuum's ANALYZE keeps them on a production server.

    This server may run without autovacuum. Statistics taken while the usage tables were
    empty would have the duplicate check and the foreign-key checks of every insert planned
    as scans of a table believed empty, and each connection keeps such plans until the
    statistics change: a fresh database would then measure a quadratic slowdown no
    production server shows.
    """
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute("ANALYZE")


def start_gunicorn(port: int, workers: int, threads: int) -> subprocess.Popen:
    kind = f"{workers} sync workers" if threads == 1 else f"{workers} workers x {threads} threads"
    say(f"starting gunicorn on {HOST}:{port} ({kind})...")
    worker_class = ["-k", "sync"] if threads == 1 else ["-k", "gthread", "--threads", str(threads)]
    process = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"), "billing_portal.wsgi", "-b", f"{HOST}:{port}",
            "-w", str(workers), *worker_class, "--log-level", "warning",
        ],
        cwd=ROOT, env=environment(), start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("gunicorn did not answer /health within 60 s")


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict) -> int:
        self.connection.request("POST", path, json.dumps(body), self.headers)
        response = self.connection.getresponse()
        response.read()
        return response.status


def event(n: int) -> dict:
    return {
        "event_id": f"{RUN}-{n}",
        "product_id": "gpt-4o-mini",
        "user_id": f"user{n % 50}",
        "usage_details": {"input_tokens": 1200 + n % 97, "output_tokens": 300 + n % 31},
    }


RUN = uuid.uuid4().hex[:10]
counter = iter(range(10**9))
counter_lock = threading.Lock()


def next_n() -> int:
    with counter_lock:
        return next(counter)


def paced_singles(port: int, key: str, rate: int, seconds: int) -> list[float]:
    """Open loop: request i is due at start + i/rate; latency counts from when it was due."""
    total = rate * seconds
    due: queue.Queue = queue.Queue()
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()

    def worker():  # few threads: the generator's own contention must not add latency
        client = Client(port, key)
        while True:
            item = due.get()
            if item is None:
                return
            scheduled = item
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            status = client.post("/api/v1/usage/record", event(next_n()))
            elapsed = time.perf_counter() - scheduled
            with lock:
                latencies.append(elapsed)
                if status != 201:
                    errors.append(status)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(6)]
    for thread in workers:
        thread.start()
    start = time.perf_counter() + 0.2
    for i in range(total):
        due.put(start + i / rate)
    for _ in workers:
        due.put(None)
    while any(thread.is_alive() for thread in workers):
        time.sleep(1)
        say(f"  paced singles: {len(latencies)}/{total}")
    if errors:
        say(f"  non-201 answers: {len(errors)} (e.g. {errors[:3]})")
    return latencies


def closed_loop(port: int, key: str, clients: int, seconds: float, batch: int) -> tuple[int, float]:
    accepted = 0
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    statuses = []

    def worker():
        nonlocal accepted
        client = Client(port, key)
        while time.perf_counter() < stop:
            if batch == 1:
                status = client.post("/api/v1/usage/record", event(next_n()))
                count = 1 if status == 201 else 0
            else:
                events = [event(next_n()) for _ in range(batch)]
                status = client.post("/api/v1/usage/batch", {"events": events})
                count = batch if status == 200 else 0
            with lock:
                accepted += count
                statuses.append(status)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(2)
        say(f"  {'batches' if batch > 1 else 'singles'}: {accepted} events so far")
    bad = [s for s in statuses if s not in (200, 201)]
    if bad:
        say(f"  non-2xx answers: {len(bad)} (e.g. {bad[:3]})")
    return accepted, time.perf_counter() - started


def raw_baseline(rows: int) -> tuple[float, float]:
    """Rows/s for multi-row INSERT (1,000 a statement) and COPY into a usage-event-shaped
    table with its primary key, unique (organisation, key) and (organisation, time) index."""
    import psycopg

    ddl = """
        DROP TABLE IF EXISTS bench_raw_event;
        CREATE TABLE bench_raw_event (
            id bigserial PRIMARY KEY, organization_id bigint NOT NULL,
            idempotency_key varchar(255) NOT NULL, fingerprint varchar(64) NOT NULL,
            product_id bigint NOT NULL, service_type varchar(64) NOT NULL,
            user_id varchar(255) NOT NULL, session_id varchar(255) NOT NULL,
            quantity numeric(28, 12) NOT NULL, quantities jsonb NOT NULL,
            usage_details jsonb NOT NULL, occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            UNIQUE (organization_id, idempotency_key));
        CREATE INDEX ON bench_raw_event (organization_id, occurred_at);
    """

    def row(n, tag):
        details = json.dumps({"input_tokens": 1200, "output_tokens": 300})
        at = "2026-11-23T12:00:00Z"
        return (1, f"{tag}-{n}", "f" * 64, 1, "model_inference", f"user{n % 50}", "",
                "1500", details, details, at, at)  # fmt: skip

    columns = ("organization_id, idempotency_key, fingerprint, product_id, service_type, "
               "user_id, session_id, quantity, quantities, usage_details, occurred_at, "
               "received_at")  # fmt: skip
    with psycopg.connect(DATABASE_URL) as conn:
        conn.execute(ddl)
        conn.commit()
        placeholders = "(" + ", ".join(["%s"] * 12) + ")"
        started = time.perf_counter()
        for offset in range(0, rows, 1000):
            chunk = [row(n, "ins") for n in range(offset, min(rows, offset + 1000))]
            sql = f"INSERT INTO bench_raw_event ({columns}) VALUES " + ", ".join(
                [placeholders] * len(chunk)
            )
            conn.execute(sql, [value for r in chunk for value in r])
            conn.commit()
        insert_rate = rows / (time.perf_counter() - started)

        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY bench_raw_event ({columns}) FROM STDIN") as copy,
        ):
            for n in range(rows):
                copy.write_row(row(n, "copy"))
        conn.commit()
        copy_rate = rows / (time.perf_counter() - started)
        conn.execute("DROP TABLE bench_raw_event")
        conn.commit()
    return insert_rate, copy_rate


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="paced single posts per second")
    parser.add_argument("--seconds", type=int, default=15, help="length of each timed phase")
    parser.add_argument("--raw-rows", type=int, default=50_000, help="rows of the baseline")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (1: sync)")
    args = parser.parse_args()

    key, _ = prepare_database()
    port = free_port()
    server = start_gunicorn(port, args.workers, args.threads)
    try:
        say("\n0. warm-up (every worker connects and loads its code; not measured)")
        closed_loop(port, key, 8, 3, batch=1)
        closed_loop(port, key, 2, 3, batch=1000)
        analyze()
        say(f"\n1. single posts paced at {args.rate}/s for {args.seconds} s")
        latencies = paced_singles(port, key, args.rate, args.seconds)
        say(f"\n2. single posts, closed loop, 8 clients, {args.seconds} s")
        singles, singles_time = closed_loop(port, key, 8, args.seconds, batch=1)
        say(f"\n3. 1,000-event batches, closed loop, 2 clients, {args.seconds} s")
        batched, batch_time = closed_loop(port, key, 2, args.seconds, batch=1000)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    say(f"\n4. raw baseline: {args.raw_rows:,} rows by multi-row INSERT and by COPY")
    insert_rate, copy_rate = raw_baseline(args.raw_rows)

    batch_rate = batched / batch_time
    single_rate = singles / singles_time
    ms = [value * 1000 for value in latencies]
    say("\n=== results (this machine, same run) ===")
    say(f"single posts at {args.rate}/s:   p50 {statistics.median(ms):6.1f} ms   "
        f"p99 {percentile(ms, 0.99):6.1f} ms   max {max(ms):6.1f} ms   (n={len(ms)})")  # fmt: skip
    say(f"single posts, closed loop:  {single_rate:8.0f} events/s")
    say(f"batch ingestion (1,000):    {batch_rate:8.0f} events/s priced and stored")
    say(f"raw multi-row INSERT:       {insert_rate:8.0f} rows/s")
    say(f"raw COPY:                   {copy_rate:8.0f} rows/s")
    say(f"batch / raw INSERT:         {batch_rate / insert_rate:8.1%}   (target >= 25%)")
    say(f"batch / raw COPY:           {batch_rate / copy_rate:8.1%}")
    say(f"single p99 at {args.rate}/s:       {percentile(ms, 0.99):8.1f} ms (target <= 25 ms)")


if __name__ == "__main__":
    main()
