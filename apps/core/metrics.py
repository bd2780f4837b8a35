"""The portal's Prometheus counters and histograms (prometheus-client), updated where
things happen; ``billing_portal.metrics`` serves them at ``/metrics`` with the gauges read
at each scrape. Under gunicorn with several worker processes, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory: every process writes its samples there
and a scrape adds them up (``gunicorn.conf.py`` removes the files of a worker that exits).
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured
from prometheus_client import Counter, Histogram


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


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)
