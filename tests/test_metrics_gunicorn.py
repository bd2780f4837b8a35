"""Metrics under gunicorn with several worker processes: a scrape, whichever worker answers
it, adds up what every worker counted (prometheus-client's multi-process mode)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_requests(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "billing_http_requests_total" and sample.labels["route"] == "health":
                total += sample.value
    return total


def test_a_scrape_adds_up_every_workers_counts(tmp_path):
    db = connection.settings_dict
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "METRICS_TOKEN": "scrape-token-for-the-test",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_portal.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", "3", "--worker-class", "sync"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        statuses = set()
        for _ in range(60):  # new connections: the workers take turns accepting them
            statuses.add(httpx.get(f"{base}/health", timeout=5).status_code)
        auth = {"Authorization": "Bearer scrape-token-for-the-test"}
        scrapes = [httpx.get(f"{base}/metrics", headers=auth, timeout=5) for _ in range(6)]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert statuses == {200}, output[-2000:]
    assert all(scrape.status_code == 200 for scrape in scrapes)
    # Every scrape, answered by any worker, sees the 60 requests of all the workers.
    assert [health_requests(scrape.text) for scrape in scrapes] == [60.0] * 6
    writers = list((tmp_path / "metrics").glob("counter_*.db"))
    print(f"{len(writers)} worker processes wrote counters")
    assert writers
