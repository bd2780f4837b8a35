"""When to try a request again, and how long to wait first.

A request is tried again when no answer came (connection refused or lost, timeout), on
HTTP 5xx and on 429. A request that changes something is only sent again if it is safe:
usage carries an idempotency key that goes unchanged with every attempt (the portal
answers a repeat as the duplicate it is), the other writes are idempotent by nature
(processing or refunding a record twice changes nothing) — except creating a budget,
which is sent again only when it certainly never reached the portal.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from billing_client.errors import BillingError

# Statuses that say the request was not processed, or that processing it again is safe.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Codes of failures where the request certainly never reached the portal.
NOT_SENT_CODES = frozenset({"connect_error", "connect_timeout", "pool_timeout"})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th retry waits between half and all of
    ``min(backoff_max, backoff_base * 2**n)`` seconds, or what ``Retry-After`` asks for
    (when it asks for more than ``max_retry_after``, the error is raised instead)."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative.")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("Backoff times must not be negative.")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first), with jitter."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**retry))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay(self, retry: int, error: BillingError, *, idempotent: bool) -> float | None:
        """Seconds to wait before trying again after ``error``, or None to give up."""
        if retry >= self.max_retries or not is_retryable(error, idempotent=idempotent):
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return error.retry_after
        return self.backoff(retry)


def is_retryable(error: BillingError, *, idempotent: bool) -> bool:
    if error.status is None:
        return idempotent or error.code in NOT_SENT_CODES
    if error.status == 429:
        return True  # refused before anything was done
    return idempotent and error.status in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date. A value
    that is no finite number (``inf``, ``1e999``, ``nan``) is no answer (None); a date in
    the past is 0. How long a caller is willing to wait is its own limit to apply."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max((when - now).total_seconds(), 0.0)
