"""Request monitoring: the request id on every response and log line, request counts and
latency by route for Prometheus, per-API-key request and error counts for staff
(``apps.customers.key_stats``), and a warning for every request slower than
``SLOW_REQUEST_MS``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from apps.core import metrics, request_id
from apps.customers.key_stats import count_key_request

logger = logging.getLogger("billing_portal.requests")


class RequestMonitoringMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id.accept(request.headers.get(request_id.HEADER))
        # Bound until the response is closed (``request_finished``), so the handler's own
        # lines after the middleware (Django's "Not Found: ..." warnings) carry it too.
        request_id.bind(rid)
        request.request_id = rid
        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        response[request_id.HEADER] = rid
        self._observe(request, response, seconds)
        return response

    def _observe(self, request: HttpRequest, response: HttpResponse, seconds: float) -> None:
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        if request.path == "/metrics":
            route = "metrics"
        try:
            metrics.observe_request(request.method, route, response.status_code, seconds)
        except Exception:  # noqa: BLE001 - monitoring never breaks an answer
            logger.warning("Could not record request metrics", exc_info=True)
        key_id = getattr(request, "api_key_id", None)
        if key_id is not None:
            error = response.status_code >= 400
            if not getattr(request, "key_request_counted", False):
                count_key_request(key_id, error=error)
            elif error:  # the request itself was counted with the throttle's round trip
                count_key_request(key_id, error=True, request=False)
        if seconds * 1000 >= settings.SLOW_REQUEST_MS:
            logger.warning(
                "Slow request: %s %s answered %s in %.0f ms",
                request.method, route, response.status_code, seconds * 1000,
            )  # fmt: skip


@receiver(request_finished)
def _unbind(**kwargs) -> None:
    request_id.bind(request_id.NONE)
