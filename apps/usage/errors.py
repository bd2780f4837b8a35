"""Errors of the usage domain, each with its stable code."""

from apps.customers.wallets import InsufficientCredits, InsufficientWalletBalance
from billing_portal.errors import PortalError

__all__ = [
    "BatchTooLarge",
    "BillingRecordNotFound",
    "EventInFuture",
    "EventTooOld",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InsufficientWalletBalance",
    "InvalidIdempotencyKey",
    "InvalidStatusTransition",
    "NotIncludedInSubscription",
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
