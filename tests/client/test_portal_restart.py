"""The sample service (``clients/python/examples/track_10k.py``) tracks 10,000 events while
the portal itself, served by gunicorn, is killed and started again: the portal's stats
endpoint then reports exactly 10,000 events."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "clients" / "python" / "examples" / "track_10k.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database, for gunicorn: the same user, password, host, port and name."""
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        user += ":" + quote(db["PASSWORD"], safe="")
    credentials = f"{user}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{db['HOST'] or ''}{port}/{quote(db['NAME'], safe='')}"


def serve(port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "API_THROTTLE_RATE": ""}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_portal.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", "2", "--worker-class", "sync"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed whole, workers included
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except httpx.TransportError:
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)


def kill(server: subprocess.Popen) -> None:
    """A crash: no graceful shutdown, workers included. A group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


def test_ten_thousand_events_are_counted_exactly_across_a_killed_and_restarted_portal():
    from apps.customers.services import issue_api_key
    from apps.usage.models import UsageEvent
    from tests.customers.factories import OrganizationFactory
    from tests.pricing.factories import PlanFactory, ProductFactory, price

    plan = PlanFactory(code="restart-plan")
    organization = OrganizationFactory(slug="restart-co", plan=plan)
    price(ProductFactory(code="gateway-request", unit="request"), unit_price="0.0001")
    key = issue_api_key(name="sample service", organization=organization).raw_key
    port = free_port()
    server = serve(port)
    script = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--base-url", f"http://127.0.0.1:{port}", "--api-key", key,
         "--count", "10000", "--batch-size", "250", "--rate", "2000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    events = UsageEvent.objects.filter(organization=organization)
    try:
        deadline = time.monotonic() + 120
        while events.count() < 3000:  # well into the run
            assert time.monotonic() < deadline and script.poll() is None, "no progress"
            time.sleep(0.05)
        kill(server)
        at_kill = events.count()
        time.sleep(2)  # the tracker meets a refused connection and keeps its events
        server = serve(port)
        output, _ = script.communicate(timeout=300)
    finally:
        if script.poll() is None:
            script.kill()
        kill(server)
    print(output)

    assert script.returncode == 0, output[-3000:]
    assert at_kill < 10_000, "the restart came after the run"
    assert "the portal reports" in output and "10000 new (expected 10000)" in output
    assert events.count() == 10_000
    assert sum(events.values_list("quantity", flat=True), Decimal(0)) == 10_000
