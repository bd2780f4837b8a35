"""A real Celery worker, started against Redis, runs a task of the portal."""

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.customers import tasks, wallets
from apps.customers.models import CreditGrant
from billing_portal.celery import app

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def broker_url() -> str:
    """The broker CI uses (CELERY_BROKER_URL: RabbitMQ), else Redis."""
    return os.environ.get("CELERY_BROKER_URL") or settings.REDIS_URL


def start_worker(queue: str, *options: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": broker_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "billing_portal", "worker", "--pool=solo",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle",
         "--loglevel=INFO", *options],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    print(output[-3000:])
    return output


@pytest.fixture
def broker():
    """Tasks go to Redis, not in-process."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: set REDIS_URL (CI does) to run it")
    previous_broker = app.conf.broker_url
    app.conf.task_always_eager = False
    app.conf.broker_url = broker_url()
    try:
        yield
    finally:
        app.conf.broker_url = previous_broker


@pytest.fixture
def worker(broker):
    queue = f"test-{uuid.uuid4().hex[:8]}"
    process = start_worker(queue)
    try:
        yield queue
    finally:
        stop(process)


def test_a_real_worker_runs_the_credit_expiry_task(worker, organization):
    grant = wallets.grant_credits(
        organization=organization, amount=D(5), reason="r", granted_by="t",
        expires_at=timezone.now() - timedelta(minutes=1),
    )  # fmt: skip

    tasks.expire_credits.apply_async(queue=worker)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if CreditGrant.objects.get(pk=grant.pk).remaining == 0:
            break
        time.sleep(0.5)
    assert CreditGrant.objects.get(pk=grant.pk).remaining == 0


def test_a_real_worker_runs_the_budget_sweep(worker, org, key, calls):
    from apps.budgets import tasks as budget_tasks
    from apps.budgets.models import Alert, Budget
    from apps.usage.ingestion import EventInput, ingest

    Budget.objects.create(organization=org, name="b", limit=D(1), currency="USD", is_hard=False)
    app.conf.task_always_eager = True  # the sweep ingestion asks for runs here, not queued
    ingest(
        organization=org,
        events=[EventInput(idempotency_key="w1", product_id="calls", fingerprint="w1",
                           usage_amount=D(90))],
    )  # fmt: skip
    app.conf.task_always_eager = False
    Alert.objects.all().delete()  # leave the alert to the worker's sweep

    budget_tasks.sweep_budgets.apply_async(queue=worker)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not Alert.objects.exists():
        time.sleep(0.5)
    assert list(Alert.objects.values_list("threshold", flat=True)) == [80]


def test_a_requests_id_is_in_the_log_line_of_the_task_it_enqueued(broker, org, key, calls):
    from rest_framework.test import APIClient

    from apps.budgets.models import Alert, Budget
    from tests.http import bearer

    Budget.objects.create(organization=org, name="b", limit=D(1), currency="USD", is_hard=False)
    app.control.purge()  # what other tests left in the default queue, never consumed
    response = APIClient().post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 90}, format="json",
        HTTP_X_REQUEST_ID="trace-worker-42", **bearer(key),
    )  # fmt: skip
    assert response.status_code == 201 and response["X-Request-ID"] == "trace-worker-42"
    assert not Alert.objects.exists()  # the sweep it enqueued has not run yet

    process = start_worker("celery")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Alert.objects.exists():
            time.sleep(0.5)
    finally:
        output = stop(process)

    assert list(Alert.objects.values_list("threshold", flat=True)) == [80]
    started = [line for line in output.splitlines()
               if "apps.budgets.tasks.sweep_budgets" in line and "started" in line]  # fmt: skip
    assert started and all("[trace-worker-42]" in line for line in started), output[-2000:]


def test_a_real_beat_stamps_its_heartbeat(broker, tmp_path):
    from billing_portal import beat

    assert beat.age() is None
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": broker_url(),
        "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "billing_portal", "beat", "--loglevel=INFO",
         "--pidfile=", f"--schedule={tmp_path / 'beat-schedule'}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and beat.age() is None:
            time.sleep(0.5)
    finally:
        output = stop(process)
    age = beat.age()
    assert age is not None and age < 30, output[-2000:]


def test_tasks_a_killed_worker_had_taken_run_again_soon_after_a_worker_is_back(broker):
    """kill -9 of a worker holding two tasks (one running, one taken after it): on
    RabbitMQ both go back to the queue as its connection drops, and the next worker runs
    them within a minute of starting."""
    if not broker_url().startswith("amqp"):
        pytest.skip("Redis gives a dead worker's tasks back after its visibility timeout "
                    "only; set CELERY_BROKER_URL=amqp://... (CI does) to run it")  # fmt: skip
    from tests.celery_tasks import hold_the_worker

    queue = f"test-{uuid.uuid4().hex[:8]}"
    first = start_worker(queue, "--prefetch-multiplier=2", "-I", "tests.celery_tasks")
    try:
        for label in ("one", "two"):
            hold_the_worker.apply_async((label, 120), queue=queue)
        assert _wait_for_line(first, "hold_the_worker one taken"), "the worker never took it"
    finally:
        first.kill()  # kill -9: no warm shutdown, no acknowledgement
        first.communicate(timeout=30)

    restarted = time.time()
    second = start_worker(queue, "-I", "tests.celery_tasks")
    try:
        done = {}
        deadline = time.monotonic() + 60
        while len(done) < 2 and time.monotonic() < deadline:
            line = second.stdout.readline()
            if " done at " in line:
                label = line.split("hold_the_worker ")[1].split()[0]
                done[label] = float(line.rsplit(" ", 1)[1]) - restarted
    finally:
        stop(second)
    print(f"after the restart, the tasks ran at: {done}")
    assert set(done) == {"one", "two"}, done
    assert all(seconds < 60 for seconds in done.values()), done


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            return False
        if text in line:
            return True
    return False
