"""Errors as types, mapped to HTTP in one place.

Every API error has one shape::

    {"error": {"code": "budget_exceeded", "message": "...", "details": {...}}}

``code`` is stable and machine-readable; ``message`` is for people; ``details`` carries
field errors or the figures a client needs (never secrets).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class PortalError(Exception):
    """Base of the domain errors; each subclass names its code and HTTP status."""

    code = "error"
    status_code = 400
    message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or self.message
        self.details = details if details is not None else {}
        super().__init__(self.message)


# DRF's own exceptions, by class, to our stable codes.
_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ParseError: "malformed_request",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.Throttled: "throttled",
    drf.ValidationError: "validation_error",
}


def error_payload(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(code: str, message: str, status: int, details: Any = None) -> JsonResponse:
    """A plain Django JSON error, for the places outside DRF (middleware, handlers)."""
    return JsonResponse(error_payload(code, message, details), status=status)


def _drf_code(exc: drf.APIException) -> str:
    codes = exc.get_codes()
    # A code given where the exception was raised (``code="invalid_api_key"``) wins.
    if isinstance(codes, str) and codes != exc.default_code:
        return codes
    for klass in type(exc).__mro__:
        if klass in _DRF_CODES:
            return _DRF_CODES[klass]
    return codes if isinstance(codes, str) else "error"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every known error becomes the one JSON shape."""
    if isinstance(exc, PortalError):
        return Response(error_payload(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if not isinstance(exc, drf.APIException):
        return None  # an unexpected error: ApiErrorMiddleware logs it and answers 500

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait) + (0 if exc.wait == int(exc.wait) else 1))

    code = _drf_code(exc)
    if isinstance(exc, drf.ValidationError):
        message = "The request has invalid fields."
        detail = exc.detail
        details = {"fields": detail if isinstance(detail, dict) else {"non_field_errors": detail}}
    else:
        message = str(exc.detail)
        details = {}
    if isinstance(exc, drf.Throttled) and exc.wait is not None:
        details = {"retry_after_seconds": headers["Retry-After"]}
    return Response(error_payload(code, message, details), status=exc.status_code, headers=headers)


class ErrorSerializer(serializers.Serializer):
    """Every error answer: its `code`, `message` and `details` (as in each event a batch
    refuses)."""

    class BodySerializer(serializers.Serializer):
        code = serializers.CharField(help_text="Stable and machine-readable: `budget_exceeded`.")
        message = serializers.CharField(help_text="For people; may change.")
        details = serializers.DictField(
            help_text="Field errors (`fields`), or the figures a client needs to act."
        )

    error = BodySerializer()
