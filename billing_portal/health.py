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


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}


def overall_status(results: dict[str, CheckResult]) -> str:
    if results["database"].status != HEALTHY:
        return UNHEALTHY
    if any(result.status != HEALTHY for result in results.values()):
        return DEGRADED
    return HEALTHY


def run_checks() -> tuple[str, dict[str, CheckResult]]:
    results = {name: check() for name, check in CHECKS.items()}
    return overall_status(results), results
