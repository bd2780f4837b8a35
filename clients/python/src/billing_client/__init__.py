"""Client of the billing portal's API: usage recording with retries that never bill
twice, a batching usage tracker, entitlement checks."""

__version__ = "0.1.0"

from billing_client.async_client import AsyncBillingClient  # noqa: E402
from billing_client.client import BillingClient  # noqa: E402
from billing_client.endpoints import new_idempotency_key, usage_event  # noqa: E402
from billing_client.entitlements import (  # noqa: E402
    RESOURCE_PRODUCTS,
    EntitlementCheck,
    require_entitlement,
)
from billing_client.errors import (  # noqa: E402
    AuthenticationFailed,
    BillingError,
    BudgetExceeded,
    Conflict,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    SubscriptionPastDue,
    Unavailable,
    ValidationFailed,
)
from billing_client.pending import TrackerFull  # noqa: E402
from billing_client.retrying import RetryPolicy  # noqa: E402
from billing_client.tracker import UsageTracker  # noqa: E402

__all__ = [
    "AsyncBillingClient",
    "AuthenticationFailed",
    "BillingClient",
    "BillingError",
    "BudgetExceeded",
    "Conflict",
    "EntitlementCheck",
    "IdempotencyConflict",
    "InsufficientFunds",
    "NotFound",
    "PaymentRequired",
    "PermissionDenied",
    "QuotaExceeded",
    "RESOURCE_PRODUCTS",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "SubscriptionPastDue",
    "TrackerFull",
    "Unavailable",
    "UsageTracker",
    "ValidationFailed",
    "__version__",
    "new_idempotency_key",
    "require_entitlement",
    "usage_event",
]
