"""The portal's errors as types.

Every error the API answers has one shape::

    {"error": {"code": "budget_exceeded", "message": "...", "details": {...}}}

``error_from_response`` turns it into the matching exception: by ``code`` first (stable and
machine-readable), by HTTP status for codes this client does not know yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any


class BillingError(Exception):
    """Base of every error this client raises.

    ``code`` is the portal's stable error code (or ``unavailable``/``timeout`` when no
    answer came), ``message`` is for people, ``details`` carries the figures the portal gave,
    ``status`` is the HTTP status (``None`` when no answer came). ``retry_after`` is the
    wait in seconds the portal asked for (``Retry-After``), if any.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}{status}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r})"

    @property
    def is_transient(self) -> bool:
        """Whether the same request may succeed later (no answer, 5xx, 429, 408)."""
        return self.status is None or self.status >= 500 or self.status in (408, 429)


class AuthenticationFailed(BillingError):
    """No key, a malformed, unknown or revoked key (HTTP 401)."""


class PermissionDenied(BillingError):
    """The key lacks the endpoint's scope, or the organisation is suspended (HTTP 403)."""


class NotFound(BillingError):
    """No such product, organisation, billing record or endpoint (HTTP 404)."""


class ValidationFailed(BillingError):
    """The request was refused as malformed (HTTP 400, 413, 422). ``fields`` maps each
    offending field to its messages."""

    @property
    def fields(self) -> dict[str, Any]:
        fields = self.details.get("fields")
        return dict(fields) if isinstance(fields, Mapping) else {}


class IdempotencyConflict(BillingError):
    """The idempotency key was already used for an event with other content (HTTP 409)."""

    @property
    def idempotency_key(self) -> str | None:
        return self.details.get("idempotency_key")


class Conflict(BillingError):
    """The resource is not in a state that allows the operation (HTTP 409)."""


class PaymentRequired(BillingError):
    """The portal refused to spend (HTTP 402): base of the refusals below."""


class BudgetExceeded(PaymentRequired):
    """A hard budget would be crossed; the event was not recorded.

    ``budget_id``, ``budget_name``, ``limit``, ``current_usage`` (spent this period before
    the event) and ``requested`` (the event's cost) come from the portal's details.
    """

    @property
    def budget_id(self) -> int | None:
        return self.details.get("budget_id")

    @property
    def budget_name(self) -> str | None:
        return self.details.get("budget_name")

    @property
    def currency(self) -> str | None:
        return self.details.get("currency")

    @property
    def limit(self) -> Decimal | None:
        return _decimal_or_none(self.details.get("limit"))

    @property
    def current_usage(self) -> Decimal | None:
        return _decimal_or_none(self.details.get("current_usage"))

    @property
    def requested(self) -> Decimal | None:
        return _decimal_or_none(self.details.get("requested"))

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None or self.current_usage is None:
            return None
        return max(self.limit - self.current_usage, Decimal(0))


class QuotaExceeded(PaymentRequired):
    """What the plan includes this period does not cover the usage (the portal's
    ``not_included_in_subscription``, asked for with ``billing_method="subscription_included"``);
    nothing was recorded."""

    @property
    def amount(self) -> Decimal | None:
        """What the usage would have cost beyond the inclusion."""
        return _decimal_or_none(self.details.get("amount"))


class InsufficientFunds(PaymentRequired):
    """The wallet or the credits asked for do not cover the cost."""


class SubscriptionPastDue(PaymentRequired):
    """Payment is overdue beyond the grace period: usage cannot be charged to the invoice."""


class RateLimited(BillingError):
    """Too many requests for this key (HTTP 429); ``retry_after`` says when to come back."""


class ServerError(BillingError):
    """The portal failed (HTTP 5xx)."""


class Unavailable(ServerError):
    """No answer (connection refused or lost, timeout) or the portal said it is unavailable
    (HTTP 502, 503, 504)."""


_BY_CODE: dict[str, type[BillingError]] = {
    "budget_exceeded": BudgetExceeded,
    "quota_exceeded": QuotaExceeded,
    "not_included_in_subscription": QuotaExceeded,
    "insufficient_wallet_balance": InsufficientFunds,
    "insufficient_credits": InsufficientFunds,
    "subscription_past_due": SubscriptionPastDue,
    "idempotency_conflict": IdempotencyConflict,
    "authentication_failed": AuthenticationFailed,
    "not_authenticated": AuthenticationFailed,
    "invalid_api_key": AuthenticationFailed,
    "api_key_revoked": AuthenticationFailed,
    "malformed_credentials": AuthenticationFailed,
    "permission_denied": PermissionDenied,
    "organization_suspended": PermissionDenied,
    "throttled": RateLimited,
    "validation_error": ValidationFailed,
    "malformed_request": ValidationFailed,
    "bad_request": ValidationFailed,
    "invalid_idempotency_key": ValidationFailed,
    "event_too_old": ValidationFailed,
    "event_in_future": ValidationFailed,
    "organization_required": ValidationFailed,
    "price_not_configured": ValidationFailed,
    "batch_too_large": ValidationFailed,
    "payload_too_large": ValidationFailed,
    "unsupported_media_type": ValidationFailed,
    "not_found": NotFound,
    "product_not_found": NotFound,
    "organization_not_found": NotFound,
    "billing_record_not_found": NotFound,
}

_BY_STATUS: dict[int, type[BillingError]] = {
    400: ValidationFailed,
    401: AuthenticationFailed,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: ValidationFailed,
    422: ValidationFailed,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_class(code: str, status: int | None) -> type[BillingError]:
    if status is not None and status >= 500:
        return _BY_STATUS.get(status, ServerError)
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status is None:
        return Unavailable
    return _BY_STATUS.get(status, BillingError)


def error_from_payload(
    payload: Any,
    status: int | None,
    *,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> BillingError:
    """The exception for an answer's body (the portal's error shape, or anything else a
    proxy may have answered) and status."""
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("code"), str):
        code = error["code"]
        message = str(error.get("message") or code)
        details = error.get("details")
        details = details if isinstance(details, Mapping) else {}
    else:
        code = f"http_{status}" if status is not None else "unavailable"
        message = f"Unexpected answer (HTTP {status})." if status is not None else "No answer."
        details = {}
    return error_class(code, status)(
        code, message, details, status, retry_after=retry_after, request_id=request_id
    )


def _decimal_or_none(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None
