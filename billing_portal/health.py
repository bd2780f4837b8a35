"""Health of the portal's dependencies: database, cache and Celery broker.

Statuses: ``healthy`` (HTTP 200), ``degraded`` (HTTP 200: a dependency other than the
database is down, the portal still serves and records), ``unhealthy`` (HTTP 503: the
database is unreachable, nothing can be recorded).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"

HTTP_STATUS = {HEALTHY: 200, DEGRADED: 200, UNHEALTHY: 503}


@dataclass
class CheckResult:
    status: str
    latency_ms: float
    detail: dict[str, Any] = field(default_factory=dict)

    def as_detailed(self) -> dict[str, Any]:
        return {"status": self.status, "latency_ms": round(self.latency_ms, 2), **self.detail}


def _timed(check: Callable[[], dict[str, Any]]) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = check()
        status = HEALTHY
    except Exception as exc:  # any failure of a dependency is reported, never raised
        detail = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        status = UNHEALTHY
    return CheckResult(status, (time.perf_counter() - started) * 1000, detail)


def check_database() -> CheckResult:
    def run() -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"vendor": connection.vendor}

    return _timed(run)


def check_cache() -> CheckResult:
    def run() -> dict[str, Any]:
        key = f"health:{uuid.uuid4().hex}"
        cache.set(key, "ok", timeout=5)
        if cache.get(key) != "ok":
            raise RuntimeError("value written to the cache could not be read back")
        cache.delete(key)
        return {"backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]}

    return _timed(run)


def check_broker() -> CheckResult:
    from billing_portal.celery import app

    if app.conf.task_always_eager:
        return CheckResult(HEALTHY, 0.0, {"mode": "eager (tasks run in-process)"})

    def run() -> dict[str, Any]:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            transport = conn.transport_cls
        return {"mode": "broker", "transport": str(transport)}

    return _timed(run)


# The operations' own state: degraded when late or stopped, never unhealthy (the portal
# still serves and records). Thresholds in seconds.
BEAT_LATE = 120
WEBHOOK_LATE = 15 * 60
CLOSE_STUCK = 24 * 3600


def operations_state() -> dict[str, Any]:
    """What the health report and the metrics say of beat, webhooks and the close."""
    from django.core.cache import cache
    from django.db.models import Min
    from django.utils import timezone
    from djstripe import models as djstripe

    from apps.usage.models import Statement
    from apps.usage.statements import LAST_RUN_KEY
    from billing_portal import beat

    now = timezone.now()
    pending = djstripe.WebhookEventTrigger.objects.filter(valid=True, processed=False)
    oldest = pending.aggregate(oldest=Min("created"))["oldest"]
    last_run = cache.get(LAST_RUN_KEY)
    last = Statement.objects.order_by("-created_at").values("pk", "status", "created_at").first()
    if last_run is None and last is not None:
        last_run = {"at": last["created_at"].isoformat(), "statement": last["pk"],
                    "status": last["status"]}  # fmt: skip
    from datetime import datetime

    return {
        "beat_heartbeat_age_seconds": beat.age(),
        "webhook_backlog": pending.count(),
        "webhook_oldest_pending_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        "last_close": last_run,
        "last_close_age_seconds": (
            (now - datetime.fromisoformat(last_run["at"])).total_seconds() if last_run else None
        ),
        "statements_stopped": Statement.objects.filter(status=Statement.Status.MISMATCH).count(),
        "statements_stuck": Statement.objects.filter(
            status=Statement.Status.OPEN, created_at__lt=now - timedelta(seconds=CLOSE_STUCK)
        ).count(),
    }


def _eager() -> bool:
    from billing_portal.celery import app

    return bool(app.conf.task_always_eager)


def check_worker() -> CheckResult:
    from billing_portal.celery import app

    if _eager():
        return CheckResult(HEALTHY, 0.0, {"mode": "eager (tasks run in-process)"})
    started = time.perf_counter()
    try:
        replies = app.control.ping(timeout=1.0) or []
    except Exception as exc:  # noqa: BLE001
        return CheckResult(DEGRADED, (time.perf_counter() - started) * 1000,
                           {"error": f"{type(exc).__name__}: {exc}"[:300]})  # fmt: skip
    workers = sorted(name for reply in replies for name in reply)
    status = HEALTHY if workers else DEGRADED
    detail = {"workers": workers} if workers else {"error": "no worker answered the ping"}
    return CheckResult(status, (time.perf_counter() - started) * 1000, detail)


def check_beat() -> CheckResult:
    from billing_portal import beat

    if _eager():
        return CheckResult(HEALTHY, 0.0, {"mode": "eager (no beat: periodic jobs run by hand)"})
    age = beat.age()
    if age is None:
        return CheckResult(DEGRADED, 0.0, {"error": "no heartbeat from celery-beat yet"})
    status = HEALTHY if age <= BEAT_LATE else DEGRADED
    return CheckResult(status, 0.0, {"heartbeat_age_seconds": round(age, 1)})


def _state_check(build: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]) -> CheckResult:
    started = time.perf_counter()
    try:
        status, detail = build(operations_state())
    except Exception as exc:  # noqa: BLE001
        status, detail = DEGRADED, {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return CheckResult(status, (time.perf_counter() - started) * 1000, detail)


def check_webhooks() -> CheckResult:
    def build(state):
        late = state["webhook_oldest_pending_seconds"] > WEBHOOK_LATE
        return (DEGRADED if late else HEALTHY), {
            "backlog": state["webhook_backlog"],
            "oldest_pending_seconds": round(state["webhook_oldest_pending_seconds"], 1),
        }

    return _state_check(build)


def check_close() -> CheckResult:
    def build(state):
        stopped, stuck = state["statements_stopped"], state["statements_stuck"]
        return (DEGRADED if stopped or stuck else HEALTHY), {
            "last_run": state["last_close"],
            "statements_stopped_on_mismatch": stopped,
            "statements_open_over_a_day": stuck,
        }

    return _state_check(build)


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}
# Reported by /health/detailed only (each a query or a round trip to the workers).
OPERATIONS: dict[str, Callable[[], CheckResult]] = {
    "celery_worker": check_worker,
    "celery_beat": check_beat,
    "stripe_webhooks": check_webhooks,
    "monthly_close": check_close,
}


def overall_status(results: dict[str, CheckResult]) -> str:
    if results["database"].status != HEALTHY:
        return UNHEALTHY
    if any(result.status != HEALTHY for result in results.values()):
        return DEGRADED
    return HEALTHY


def run_checks(*, detailed: bool = False) -> tuple[str, dict[str, CheckResult]]:
    results = {name: check() for name, check in CHECKS.items()}
    if detailed and results["database"].status == HEALTHY:
        results.update({name: check() for name, check in OPERATIONS.items()})
    return overall_status(results), results
