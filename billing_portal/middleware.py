"""Keeps every answer under /api/ and /health JSON, errors included.

DRF shapes the errors its views raise (``apps.core.errors``); this middleware covers
what happens outside them: a body over the size limit (refused before anything reads it),
a URL that matches nothing, an error page another middleware produced, and an unexpected
exception (logged with its traceback, answered as a JSON 500 without internals). A
database that cannot be reached is a 503 ``service_unavailable`` with ``Retry-After``,
logged in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import Resolver404, resolve

from apps.core import text
from apps.core.errors import error_response

logger = logging.getLogger("billing_portal.api")

JSON_PREFIXES = ("/api/", "/health")
DATABASE_RETRY_AFTER_SECONDS = 5

_STATUS_CODES = {
    400: ("bad_request", "The request is malformed."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "No such endpoint or resource."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
}


def _is_json_path(request: HttpRequest) -> bool:
    return request.path.startswith(JSON_PREFIXES)


class ApiErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _is_json_path(request):
            refused = self._refuse_oversize_body(request)
            if refused is not None:
                return refused
        unstorable = unstorable_in_address(request)
        if unstorable:
            if not _is_json_path(request):
                return HttpResponseBadRequest(
                    "The address or a header holds a character that is not text.",
                    content_type="text/plain; charset=utf-8",
                )
            return error_response("validation_error", "The request has invalid fields.",
                                  status=400, details={"fields": unstorable})  # fmt: skip
        response = self.get_response(request)
        if _is_json_path(request) and response.status_code >= 400 and not _is_json(response):
            code, message = _STATUS_CODES.get(
                response.status_code, ("internal_error", "Internal server error.")
            )
            if response.status_code < 500 and response.status_code not in _STATUS_CODES:
                code, message = "error", "The request could not be completed."
            json_response = error_response(code, message, response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    json_response[header] = response[header]
            return json_response
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_json_path(request):
            return None
        if isinstance(exception, Http404):
            return error_response(*_STATUS_CODES[404], status=404)
        if isinstance(exception, PermissionDenied):
            return error_response(*_STATUS_CODES[403], status=403)
        if isinstance(exception, RequestDataTooBig):
            return _too_large()
        if isinstance(exception, SuspiciousOperation):
            return error_response(*_STATUS_CODES[400], status=400)
        if isinstance(exception, DatabaseOperationalError | DatabaseInterfaceError):
            # The database is down or refused the connection (or broke off a transaction):
            # the same request may succeed in a moment. One line, not a traceback each.
            first_line = (str(exception).strip().splitlines() or [type(exception).__name__])[0]
            logger.warning("Database unavailable on %s %s: %s", request.method, request.path,
                           first_line)  # fmt: skip
            response = error_response(
                "service_unavailable",
                "The database is briefly unavailable. Retry shortly (with the same "
                "idempotency key for a write).",
                status=503,
            )
            response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
            return response
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response("internal_error", "Internal server error.", status=500)

    @staticmethod
    def _refuse_oversize_body(request: HttpRequest) -> HttpResponse | None:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return error_response("bad_request", "Content-Length is not a number.", status=400)
        if length > settings.API_MAX_BODY_BYTES:
            return _too_large()
        return None


def unstorable_in_address(request: HttpRequest) -> dict[str, list[str]]:
    """What in the path (named by the URL's own parameter when one matches), the query
    string or the headers could not be stored (``apps.core.text``): a NUL from %00,
    say. None of it ever reaches a query."""
    fields: dict[str, list[str]] = {}
    reason = text.problem(request.path)
    if reason:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
        for name, value in (match.kwargs if match else {}).items():
            if isinstance(value, str) and text.problem(value):
                fields[name] = [text.problem(value)]
        if not fields:
            fields["path"] = [reason]
    for name, values in request.GET.lists():
        for value in [name, *values]:
            reason = text.problem(value)
            if reason:
                fields[text.shown(name)] = [reason]
                break
    for name, value in request.META.items():
        if name.startswith("HTTP_") and isinstance(value, str) and text.problem(value):
            fields[name[5:].replace("_", "-").title()] = [text.problem(value)]
    return fields


def _too_large() -> HttpResponse:
    return error_response(
        "payload_too_large",
        "The request body is too large.",
        status=413,
        details={"max_bytes": settings.API_MAX_BODY_BYTES},
    )


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")
