"""Enforcement across processes and a crash: two gunicorn instances of the portal (two
workers each) take one organisation's events at once, one of them is killed with SIGKILL
in the middle, and the client retries what it never got an answer to. Nothing is spent past
a hard limit, every answered event is stored once with its ledger entries, and a retry
after the crash is answered from what committed, never charged twice."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
from django.db import connection

from apps.budgets.models import Budget, BudgetPeriod
from apps.budgets.services import save_budget
from apps.customers import wallets
from apps.customers.models import CreditEntry, CreditGrant, Wallet, WalletEntry
from apps.usage.models import BillingRecord, DailyUsage, UsageEvent

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent.parent
EVENTS = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_portal(port: int) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "API_THROTTLE_RATE": "100000/min",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_portal.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", "2", "--worker-class", "sync"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: SIGKILL takes the workers too
    )  # fmt: skip


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base} did not start"
        time.sleep(0.2)


@pytest.fixture
def enforced(org, calls):
    save_budget(Budget(organization=org, name="Month", limit=D("1.50"), currency="USD"))
    wallets.grant_credits(organization=org, amount=D("0.40"), reason="t", granted_by="t")
    wallets.top_up_wallet(organization=org, amount=D("0.60"), actor="t", reason="t")
    return org


def test_two_servers_and_a_sigkill_keep_every_limit_and_ledger_exact(enforced, key):
    ports = [free_port(), free_port()]
    servers = [start_portal(port) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    killed = threading.Event()
    answered: dict[str, tuple[int, dict]] = {}
    unanswered: list[str] = []
    lock = threading.Lock()

    def post(base: str, n: int) -> tuple[int, dict]:
        response = httpx.post(
            f"{base}/api/v1/usage/record", json={"product_id": "calls", "usage_amount": 1},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"crash-{n}"},
            timeout=30,
        )  # fmt: skip
        return response.status_code, response.json()

    def send(n: int) -> None:
        # Half the events to each server, until the first is killed.
        base = bases[n % 2] if not killed.is_set() else bases[1]
        try:
            answer = post(base, n)
        except httpx.TransportError:
            with lock:
                unanswered.append(n)
            return
        with lock:
            answered[n] = answer

    def kill_the_first() -> None:
        while len(answered) < EVENTS // 3:
            time.sleep(0.005)
        os.killpg(servers[0].pid, signal.SIGKILL)
        killed.set()

    try:
        for base in bases:
            wait_until_up(base)
        killer = threading.Thread(target=kill_the_first)
        killer.start()
        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(send, range(EVENTS), timeout=600))
        killer.join(timeout=60)
        assert killed.is_set() and servers[0].wait(timeout=30) == -signal.SIGKILL
        # The client retries, with the same key, what it got no answer to.
        retried = {n: post(bases[1], n) for n in unanswered}
    finally:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)

    statuses = [status for status, _ in answered.values()]
    print(f"{len(answered)} answered ({statuses.count(201)} accepted, {statuses.count(402)}"
          f" refused), {len(unanswered)} cut off by the kill and retried")  # fmt: skip
    assert set(statuses) <= {201, 402} and 402 in statuses
    assert {status for status, _ in retried.values()} <= {200, 201, 402}
    accepted = {n for n, (status, _) in {**answered, **retried}.items() if status in (200, 201)}
    # Every accepted event is stored once, with its billing record; nothing else is.
    keys = set(UsageEvent.objects.values_list("idempotency_key", flat=True))
    assert keys == {f"crash-{n}" for n in accepted}
    records = list(BillingRecord.objects.all())
    assert len(records) == len(keys)
    for n in accepted:
        body = (answered.get(n) or retried[n])[1]
        assert BillingRecord.objects.filter(billing_id=body["billing_id"]).exists()
    spent = sum((record.total_amount for record in records), D(0))
    assert spent <= D("1.50")
    assert BudgetPeriod.objects.get().spent == spent
    # Credits, then the wallet, then the invoice; each ledger equals its balance.
    grant = CreditGrant.objects.get()
    consumed = -sum(CreditEntry.objects.filter(kind="consumption").values_list(
        "amount", flat=True), D(0))  # fmt: skip
    by_method: dict[str, D] = {}
    for record in records:
        by_method[record.billing_method] = by_method.get(record.billing_method, D(0)) + (
            record.total_amount
        )
    assert grant.remaining == D("0.40") - consumed == D("0.40") - by_method.get(
        "credit_consumption", D(0)) >= 0  # fmt: skip
    wallet = Wallet.objects.get()
    deducted = -sum(WalletEntry.objects.filter(kind="deduction").values_list(
        "amount", flat=True), D(0))  # fmt: skip
    assert wallet.balance == D("0.60") - deducted == D("0.60") - by_method.get(
        "wallet_deduction", D(0)) >= 0  # fmt: skip
    rollup = DailyUsage.objects.all()
    assert sum(row.event_count for row in rollup) == len(records)
    assert sum((row.cost for row in rollup), D(0)) == spent
