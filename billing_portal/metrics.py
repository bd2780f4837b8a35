"""Prometheus metrics of the portal (prometheus-client), served at ``/metrics``.

Counters and histograms are updated where things happen; the gauges that describe state
(beat heartbeat age, webhook backlog, age of the last close run) are read from the
database and the cache at each scrape. Under gunicorn with several worker processes,
set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory: every process writes its samples
there and a scrape adds them up (``gunicorn.conf.py`` removes the files of a worker that
exits).

Access: with ``METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``
(401 without it, 403 with another); without one, only loopback and private addresses
may scrape (403 otherwise).
"""

from __future__ import annotations

import ipaddress
import logging
import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from billing_portal.errors import error_response

logger = logging.getLogger(__name__)


def _multiprocess_directory() -> None:
    """Creates ``PROMETHEUS_MULTIPROC_DIR`` if it names a directory that is not there yet
    (prometheus-client would fail on the first sample, in every command); says plainly
    what is wrong if it cannot be one."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a directory the portal can "
            f"create or write to ({error.strerror}); point it at an empty writable directory "
            "or unset it."
        ) from None
    if not os.access(directory, os.W_OK):
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not writable; point it at an empty "
            "writable directory or unset it."
        )


_multiprocess_directory()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "billing_http_requests", "HTTP requests answered, by route and status.",
    ["method", "route", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "billing_http_request_duration_seconds", "Time to answer an HTTP request, by route.",
    ["method", "route"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
USAGE_EVENTS = Counter(
    "billing_usage_events", "Usage events received: accepted, duplicate or refused (with the "
    "refusal's code).", ["outcome", "reason"],
)  # fmt: skip
DECIDED_AGAIN = Counter(
    "billing_ingestion_decided_again", "Usage posts decided again with every hot row locked "
    "first: what was read without a lock moved, or an event would be refused.",
)  # fmt: skip
BUDGET_REFUSALS = Counter(
    "billing_budget_refusals", "Usage refused by a budget or quota, by code.", ["code"]
)
ALERTS = Counter(
    "billing_alerts", "Budget alert deliveries, by channel and outcome.", ["channel", "outcome"]
)
WEBHOOKS = Counter(
    "billing_webhook_events", "Stripe webhook deliveries: received, processed, failed.",
    ["outcome"],
)  # fmt: skip
WEBHOOK_LAG = Histogram(
    "billing_webhook_processing_lag_seconds",
    "From a Stripe webhook's receipt to the end of its processing.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
TASKS = Counter(
    "billing_celery_tasks", "Celery task runs, by task and outcome.", ["task", "outcome"]
)
TASK_DURATION = Histogram(
    "billing_celery_task_duration_seconds", "Celery task run time, by task.", ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
)  # fmt: skip
CLOSE_RUNS = Counter(
    "billing_close_runs", "Runs of a period's close, by the statement's status after them.",
    ["outcome"],
)  # fmt: skip


class StateCollector:
    """Gauges read at scrape time (so right under any number of processes)."""

    NAMES = (
        "billing_beat_heartbeat_age_seconds",
        "billing_webhook_backlog",
        "billing_webhook_oldest_pending_seconds",
        "billing_last_close_age_seconds",
    )

    def describe(self):
        # Registration asks for the names without reading any state.
        return [GaugeMetricFamily(name, name) for name in self.NAMES]

    def collect(self):
        from billing_portal import health

        try:
            state = health.operations_state()
        except Exception:  # noqa: BLE001 - the database is down: the counters still answer
            logger.warning("State metrics not collected", exc_info=True)
            return
        heartbeat = GaugeMetricFamily(
            "billing_beat_heartbeat_age_seconds",
            "Seconds since celery-beat last ticked (NaN: never seen).",
        )
        heartbeat.add_metric([], _or_nan(state["beat_heartbeat_age_seconds"]))
        yield heartbeat
        backlog = GaugeMetricFamily(
            "billing_webhook_backlog", "Valid Stripe webhook deliveries not yet processed."
        )
        backlog.add_metric([], state["webhook_backlog"])
        yield backlog
        oldest = GaugeMetricFamily(
            "billing_webhook_oldest_pending_seconds",
            "Age of the oldest unprocessed valid Stripe webhook delivery (0: none).",
        )
        oldest.add_metric([], state["webhook_oldest_pending_seconds"])
        yield oldest
        close = GaugeMetricFamily(
            "billing_last_close_age_seconds", "Seconds since the last close step ran (NaN: never)."
        )
        close.add_metric([], _or_nan(state["last_close_age_seconds"]))
        yield close


def _or_nan(seconds: float | None) -> float:
    """An age in seconds as a gauge's sample (Prometheus samples are float64; no money is
    ever exported through here), NaN for "never"."""
    return float("nan") if seconds is None else float(seconds)


_state = StateCollector()
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    REGISTRY.register(_state)


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        collected.register(_state)
        return collected
    return REGISTRY


def _internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not given:
            response = error_response(
                "not_authenticated", "The metrics token is required (Authorization: Bearer).", 401
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        import hmac

        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error_response("permission_denied", "Wrong metrics token.", 403)
    elif not _internal(request.META.get("REMOTE_ADDR", "")):
        return error_response(
            "permission_denied", "Metrics are served to internal addresses only.", 403
        )
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)
