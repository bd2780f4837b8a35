"""Errors of the usage domain, each with its stable code."""

from apps.budgets.errors import BudgetExceeded
from apps.core.errors import PortalError
from apps.customers.wallets import InsufficientCredits, InsufficientWalletBalance
from apps.pricing.errors import InvalidUsage, PriceNotConfigured, ProductNotFound

__all__ = [
    "BatchTooLarge",
    "BillingRecordNotFound",
    "EventInFuture",
    "EventTooOld",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InsufficientWalletBalance",
    "InvalidEvent",
    "InvalidIdempotencyKey",
    "InvalidMeterData",
    "InvalidStatusTransition",
    "MeterNotFound",
    "NotIncludedInSubscription",
    "RECORDING_ERRORS",
    "UnknownEventType",
]


class IdempotencyConflict(PortalError):
    code = "idempotency_conflict"
    status_code = 409
    message = "This idempotency key was used for a different event."


class SubscriptionPastDue(PortalError):
    code = "subscription_past_due"
    status_code = 402
    message = (
        "The subscription's payment is overdue beyond its grace period: usage can be paid "
        "from the wallet or credits, not charged to the invoice, until it is paid."
    )


class NotIncludedInSubscription(PortalError):
    code = "not_included_in_subscription"
    status_code = 402
    message = "The plan's inclusion does not cover this usage."


class EventTooOld(PortalError):
    code = "event_too_old"
    status_code = 400
    message = "Events older than the ingestion window are not accepted."


class EventInFuture(PortalError):
    code = "event_in_future"
    status_code = 400
    message = "The event is dated too far in the future."


class InvalidIdempotencyKey(PortalError):
    code = "invalid_idempotency_key"
    status_code = 400
    message = "The idempotency key must be 1 to 255 characters."


class BatchTooLarge(PortalError):
    code = "batch_too_large"
    status_code = 413
    message = "A batch holds at most 1,000 events."


class BillingRecordNotFound(PortalError):
    code = "billing_record_not_found"
    status_code = 404
    message = "No such billing record."


class InvalidStatusTransition(PortalError):
    code = "invalid_status_transition"
    status_code = 409
    message = "The billing record cannot move to that status."


# --- CloudEvents and meters (``api/cloudevents``, ``api/events_views``) -------------------


class InvalidEvent(InvalidUsage):
    """A CloudEvent whose own attributes (id, subject, type, specversion, time, data) are
    missing or malformed; ``details.fields`` names them."""

    code = "invalid_event"
    message = "The event is not a valid CloudEvent."


class InvalidMeterData(InvalidUsage):
    """The event's ``data`` lacks a value its meter reads, or holds one that is not a
    non-negative number (or a group-by value that is not a scalar); ``details.fields``
    names the paths."""

    code = "invalid_meter_data"
    message = "The event's data does not hold what its meter reads."


class UnknownEventType(PortalError):
    code = "unknown_event_type"
    status_code = 400
    message = "No active meter reads events of this type."


class MeterNotFound(PortalError):
    code = "meter_not_found"
    status_code = 404
    message = "No such meter."


# What recording one event may be refused with (``api/parsing``, ``ingestion``), for the
# views that record to name among their ``error_types``.
RECORDING_ERRORS = (
    EventTooOld,
    EventInFuture,
    InvalidIdempotencyKey,
    ProductNotFound,
    PriceNotConfigured,
    IdempotencyConflict,
    BudgetExceeded,
    NotIncludedInSubscription,
    InsufficientCredits,
    InsufficientWalletBalance,
    SubscriptionPastDue,
)
