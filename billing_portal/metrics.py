"""Prometheus metrics of the portal (prometheus-client), served at ``/metrics``: the
counters and histograms of ``apps.core.metrics``, and the gauges that describe state (beat
heartbeat age, webhook backlog, age of the last close run), read from the database and the
cache at each scrape.

Access: with ``METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``
(401 without it, 403 with another); without one, only loopback and private addresses
may scrape (403 otherwise).
"""

from __future__ import annotations

import ipaddress
import logging
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from apps.core.errors import error_response

logger = logging.getLogger(__name__)


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
