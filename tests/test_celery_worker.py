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


@pytest.fixture
def worker():
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: set REDIS_URL (CI does) to run it")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "billing_portal", "worker", "--pool=solo",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle",
         "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    previous_broker = app.conf.broker_url
    app.conf.task_always_eager = False
    app.conf.broker_url = settings.REDIS_URL
    try:
        yield queue
    finally:
        app.conf.broker_url = previous_broker
        process.terminate()
        output, _ = process.communicate(timeout=30)
        print(output[-3000:])


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
