"""Ingestion benchmark: the portal under gunicorn against what this machine can do, one run.

    .venv/bin/python bench/ingest.py [--seconds 15] [--workers 4] [--threads 1]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/billing_bench;
the database is created and migrated on first use) and Redis (REDIS_URL, default
redis://127.0.0.1:6379/0). Everything runs on 127.0.0.1, bounded in count and time.

Each run creates its organisations afresh (``bench/fixtures.py``): the **enforced**
organisation (a hard monthly budget on everything, a soft daily budget on model inference,
a hard budget on its key, a funded wallet, a credit grant, an inclusion that runs out during
the run; its events cycle over a per-dimension token price, a graduated price and a package
price), the **bare** organisation (no budget, no wallet: gpt-4o-mini events), a **fleet** of
50 enforced organisations, and the ceiling's. It measures:
  1. enforced single posts paced at 100/s and at 300/s: p50/p99/max latency from the
     scheduled send time (no coordinated omission);
  2. enforced single posts, closed loop, 8 clients: events/s; then 1,000-event batches,
     closed loop, 2 clients;
  3. the same two for the bare organisation;
  4. single posts spread over the 50 organisations of the fleet, closed loop, 8 clients;
  5. the three-write ceiling (``bench/ceiling.py``: a DRF view with one conditional budget
     UPDATE, one insert and one rollup upsert in a transaction), closed loop, 8 clients;
  (the closed-loop singles of 2-5 take turns in rounds of 5 s, so that a drift of the
  machine's speed weighs on both sides of each ratio);
  6. the raw baseline: usage-event-shaped rows by psycopg multi-row INSERT and by COPY;
  7. a profile of one enforced single event and one 1,000-event batch, in-process.
and prints every figure and ratio.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_bench"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
HOST = "127.0.0.1"
# The tables of the three-write ceiling (bench/ceiling.py).
CEILING_DDL = """
    CREATE TABLE IF NOT EXISTS bench_ceiling_event (
        id bigserial PRIMARY KEY, organization_id bigint NOT NULL,
        idempotency_key varchar(255) NOT NULL, product_id varchar(100) NOT NULL,
        user_id varchar(255) NOT NULL, usage_details jsonb NOT NULL,
        amount numeric(28, 12) NOT NULL, occurred_at timestamptz NOT NULL,
        UNIQUE (organization_id, idempotency_key));
    CREATE TABLE IF NOT EXISTS bench_ceiling_rollup (
        organization_id bigint NOT NULL, product_id varchar(100) NOT NULL,
        day date NOT NULL, cost numeric(28, 12) NOT NULL, event_count integer NOT NULL,
        PRIMARY KEY (organization_id, product_id, day));
"""


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


def prepare_database() -> dict:
    """Creates and migrates the bench database if needed, then this run's organisations
    and the ceiling's tables; returns the keys (``bench/fixtures.py``)."""
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
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(CEILING_DDL)
    say("creating this run's organisations (enforced, bare, a fleet of 50, the ceiling's)...")
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c",
         f"from bench.fixtures import main; main({RUN!r})"],
        cwd=ROOT, env=environment(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    keys = json.loads(out.stdout.strip().splitlines()[-1])
    analyze()
    return keys


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
        cwd=ROOT, env={**environment(), "DJANGO_SETTINGS_MODULE": "bench.settings"},
        start_new_session=True,
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
    """One keep-alive connection; ``keys`` are used in turn (the fleet's 50)."""

    def __init__(self, port: int, keys: list[str]) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)
        self.keys = keys
        self.sent = 0

    def post(self, path: str, body: dict) -> int:
        key = self.keys[self.sent % len(self.keys)]
        self.sent += 1
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.connection.request("POST", path, json.dumps(body), headers)
        response = self.connection.getresponse()
        response.read()
        return response.status


def bare_event(n: int) -> dict:
    return {
        "event_id": f"{RUN}-{n}",
        "product_id": "gpt-4o-mini",
        "user_id": f"user{n % 50}",
        "usage_details": {"input_tokens": 1200 + n % 97, "output_tokens": 300 + n % 31},
    }


def enforced_event(n: int) -> dict:
    """A token event (per-dimension price, an inclusion until it runs out), an agent run
    (graduated) or a gateway request (package), in turn."""
    kind = n % 3
    if kind == 0:
        return bare_event(n)
    base = {"event_id": f"{RUN}-{n}", "user_id": f"user{n % 50}"}
    if kind == 1:
        return {**base, "product_id": "agent-run", "usage_amount": 1}
    return {**base, "product_id": "gateway-request", "usage_amount": 1 + n % 5}


RUN = uuid.uuid4().hex[:10]
counter = iter(range(10**9))
counter_lock = threading.Lock()


def next_n() -> int:
    with counter_lock:
        return next(counter)


@dataclass
class Target:
    """Whom a phase posts for and how: keys, the event maker, the single post's path."""

    label: str
    keys: list[str]
    make: object = enforced_event
    path: str = "/api/v1/usage/record"


def paced_singles(port: int, target: Target, rate: int, seconds: int) -> list[float]:
    """Open loop: request i is due at start + i/rate; latency counts from when it was due."""
    total = rate * seconds
    due: queue.Queue = queue.Queue()
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()

    def worker():  # enough threads to keep the schedule, few enough not to add latency
        client = Client(port, target.keys)
        while True:
            item = due.get()
            if item is None:
                return
            scheduled = item
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            status = client.post(target.path, target.make(next_n()))
            elapsed = time.perf_counter() - scheduled
            with lock:
                latencies.append(elapsed)
                if status != 201:
                    errors.append(status)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(max(6, rate // 12))]
    for thread in workers:
        thread.start()
    start = time.perf_counter() + 0.2
    for i in range(total):
        due.put(start + i / rate)
    for _ in workers:
        due.put(None)
    while any(thread.is_alive() for thread in workers):
        time.sleep(1)
        say(f"  {target.label} paced at {rate}/s: {len(latencies)}/{total}")
    if errors:
        say(f"  non-201 answers: {len(errors)} (e.g. {errors[:3]})")
    return latencies


def closed_loop(
    port: int, target: Target, clients: int, seconds: float, batch: int
) -> tuple[int, float]:
    accepted = 0
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    statuses = []

    def worker():
        nonlocal accepted
        client = Client(port, target.keys)
        while time.perf_counter() < stop:
            if batch == 1:
                status = client.post(target.path, target.make(next_n()))
                count = 1 if status == 201 else 0
            else:
                events = [target.make(next_n()) for _ in range(batch)]
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
        say(f"  {target.label} {'batches' if batch > 1 else 'singles'}: {accepted} events so far")
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


def latency(values: list[float]) -> str:
    ms = [value * 1000 for value in values]
    return (f"p50 {statistics.median(ms):6.1f} ms   p99 {percentile(ms, 0.99):6.1f} ms   "
            f"max {max(ms):6.1f} ms   (n={len(ms)})")  # fmt: skip


def profile(key: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c",
         f"from bench.profile_ingest import main; main({key!r})"],
        cwd=ROOT, env=environment(), check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each timed phase")
    parser.add_argument("--raw-rows", type=int, default=50_000, help="rows of the baseline")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (1: sync)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles")
    args = parser.parse_args()
    seconds = args.seconds

    keys = prepare_database()
    enforced = Target("enforced", [keys["enforced"]])
    bare = Target("bare", [keys["bare"]], make=bare_event)
    fleet = Target("fleet of 50", keys["fleet"])
    ceiling = Target("ceiling", [keys["ceiling"]], make=bare_event, path="/bench/ceiling")
    port = free_port()
    server = start_gunicorn(port, args.workers, args.threads)
    figures = {}
    try:
        say("\n0. warm-up (every worker connects and loads its code; not measured)")
        for target in (enforced, bare, fleet, ceiling):
            closed_loop(port, target, 8, 2, batch=1)
        closed_loop(port, enforced, 2, 3, batch=1000)
        analyze()
        for rate in (100, 300):
            say(f"\n1. enforced single posts paced at {rate}/s for {seconds} s")
            figures[f"paced {rate}"] = paced_singles(port, enforced, rate, seconds)
        # The closed-loop singles of the enforced, bare and fleet organisations and of the
        # ceiling take turns, in rounds: a drift of the machine's speed during the run then
        # weighs on every ratio's two sides alike.
        rounds = max(1, seconds // 5)
        say(f"\n2-5. single posts, closed loop, 8 clients: the enforced and bare organisations,"
            f" the fleet over 50 organisations and the three-write ceiling, in turn,"
            f" {rounds} rounds of {seconds / rounds:.0f} s each")  # fmt: skip
        turns = {"enforced singles": enforced, "bare singles": bare, "fleet singles": fleet,
                 "ceiling": ceiling}  # fmt: skip
        singles = {name: [0, 0.0] for name in turns}
        for _ in range(rounds):
            for name, target in turns.items():
                count, elapsed = closed_loop(port, target, 8, seconds / rounds, 1)
                singles[name][0] += count
                singles[name][1] += elapsed
        figures.update({name: tuple(totals) for name, totals in singles.items()})
        for number, target in ((2, enforced), (3, bare)):
            say(f"\n{number}. {target.label}: 1,000-event batches, closed loop, 2 clients,"
                f" {seconds} s")  # fmt: skip
            figures[f"{target.label} batches"] = closed_loop(port, target, 2, seconds, 1000)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    say(f"\n6. raw baseline: {args.raw_rows:,} rows by multi-row INSERT and by COPY")
    insert_rate, copy_rate = raw_baseline(args.raw_rows)
    if not args.no_profile:
        say("\n7. profiles (in-process, the enforced organisation)")
        profile(keys["enforced"])

    def rate(name: str) -> float:
        count, elapsed = figures[name]
        return count / elapsed

    ceiling_rate = rate("ceiling")
    kind = "sync" if args.threads == 1 else f"gthread x {args.threads}"
    say(f"\n=== results (this machine, one run; gunicorn {args.workers} workers, {kind}) ===")
    for paced in (100, 300):
        say(f"enforced singles paced {paced}/s: {latency(figures[f'paced {paced}'])}")
    rows = [
        ("enforced singles (8 clients)", rate("enforced singles"), ceiling_rate, "ceiling", 0.70),
        ("enforced batches (1,000)", rate("enforced batches"), insert_rate, "raw INSERT", 0.50),
        ("bare singles (8 clients)", rate("bare singles"), ceiling_rate, "ceiling", None),
        ("bare batches (1,000)", rate("bare batches"), insert_rate, "raw INSERT", None),
        ("fleet of 50 singles", rate("fleet singles"), rate("enforced singles"),
         "enforced singles", 1.0),
    ]  # fmt: skip
    for label, value, base, base_label, target in rows:
        goal = f"   (target >= {target:.0%})" if target else ""
        say(f"{label:30} {value:8.0f} events/s   = {value / base:6.1%} of {base_label}{goal}")
    say(f"{'three-write ceiling':30} {ceiling_rate:8.0f} requests/s")
    say(f"{'raw multi-row INSERT':30} {insert_rate:8.0f} rows/s")
    say(f"{'raw COPY':30} {copy_rate:8.0f} rows/s")
    say("p99 target at 100/s and 300/s: <= 25 ms")


if __name__ == "__main__":
    main()
