"""How fast the admin answers with an admin-sized load, on PostgreSQL.

    .venv/bin/python bench/admin.py [--events 1000000] [--records 10000] [--runs 5]

Uses BENCH_ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/billing_admin_bench),
created, migrated and filled by ``manage.py generate_admin_load`` the first time. Then,
as a signed-in superuser, it opens every changelist of the portal's models,
the usage lists with a filter, a search and a date drill-down, the finance dashboard and
an organisation's page over HTTP from the portal under gunicorn (one worker), ``--runs``
times each after a warm-up, and prints the median and the slowest time of each against
the 300 ms target.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_admin_bench"
)
TARGET_MS = 300


def say(message: str) -> None:
    print(message, flush=True)


def prepare(events: int, records: int) -> None:
    import psycopg

    admin_url = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")
    env = {**os.environ, "DATABASE_URL": DATABASE_URL}
    say("migrating (the first time takes about a minute)...")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True)  # fmt: skip
    with psycopg.connect(DATABASE_URL) as conn:
        have = conn.execute("SELECT count(*) FROM usage_usageevent").fetchone()[0]
    if have < events:
        say(f"loading {events - have:,} usage events and {records:,} billing records...")
        subprocess.run(
            [sys.executable, "manage.py", "generate_admin_load", "--events", str(events - have),
             "--records", str(records)],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip
    else:
        say(f"{have:,} usage events already loaded")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    """The portal under gunicorn (one sync worker: pages are timed one at a time)."""
    import http.client

    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DATABASE_URL=DATABASE_URL, LOG_LEVEL="WARNING", DJANGO_DEBUG="false",
               DJANGO_ALLOWED_HOSTS="127.0.0.1")  # fmt: skip
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "billing_portal.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", "1", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("gunicorn did not start")


def pages_and_session() -> tuple[list[tuple[str, str]], str]:
    """The pages to open, and a session of a superuser to open them with."""
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib import admin
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.urls import reverse

    from apps.customers.models import Organization
    from apps.usage.models import UsageEvent

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()

    pages = [("finance dashboard", "/admin/")]
    for model in admin.site._registry:
        meta = model._meta
        if meta.app_label in ("customers", "pricing", "usage", "budgets"):
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
            pages.append((f"{meta.app_label}.{meta.model_name}", url))
    organization = Organization.objects.filter(slug__startswith="load-").first()
    event = UsageEvent.objects.order_by("-id").first()
    day = event.occurred_at
    pages += [
        ("usage events: one organisation", "/admin/usage/usageevent/?organization__id__exact="
         f"{organization.pk}"),
        ("usage events: search a key", f"/admin/usage/usageevent/?q={event.idempotency_key}"),
        ("usage events: a month", f"/admin/usage/usageevent/?occurred_at__year={day.year}"
         f"&occurred_at__month={day.month}"),
        ("usage events: a day", f"/admin/usage/usageevent/?occurred_at__year={day.year}"
         f"&occurred_at__month={day.month}&occurred_at__day={day.day}"),
        ("usage events: page 50", "/admin/usage/usageevent/?p=50"),
        ("billing records: failed", "/admin/usage/billingrecord/?status__exact=failed"),
        ("organisation page", f"/admin/customers/organization/{organization.pk}/change/"),
    ]  # fmt: skip
    return pages, session.session_key


def measure(runs: int) -> list[tuple[str, float, float, int]]:
    """Each page over HTTP from the portal under gunicorn, as a browser would ask for it
    (the whole response read), ``runs`` times after one warm-up."""
    import http.client

    pages, session_key = pages_and_session()
    port = free_port()
    server = start_server(port)
    headers = {"Cookie": f"sessionid={session_key}", "Host": "127.0.0.1"}
    results = []
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for label, url in pages:
            times, status = [], 0
            for attempt in range(runs + 1):
                started = time.perf_counter()
                connection.request("GET", url, headers=headers)
                response = connection.getresponse()
                response.read()
                elapsed = (time.perf_counter() - started) * 1000
                status = response.status
                if attempt:  # the first is the warm-up
                    times.append(elapsed)
            results.append((label, statistics.median(times), max(times), status))
            say(f"  {label:<42} {statistics.median(times):7.1f} ms")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    prepare(args.events, args.records)
    say(f"\nopening each page {args.runs} times (after one warm-up):")
    results = measure(args.runs)
    say(f"\n=== results: median and slowest of {args.runs}, target <= {TARGET_MS} ms ===")
    slow = 0
    for label, median, worst, status in results:
        mark = "ok" if worst <= TARGET_MS and status == 200 else "SLOW" if status == 200 else status
        slow += mark != "ok"
        say(f"{label:<44} {median:7.1f} ms  (max {worst:7.1f})  {mark}")
    say(f"\n{len(results) - slow} of {len(results)} pages within {TARGET_MS} ms")


if __name__ == "__main__":
    main()
