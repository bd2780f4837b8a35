"""Reading usage events from JSON, fast enough for a thousand per request.

Checks shape only (types, ranges, the ingestion window, the idempotency key); what needs
the catalog (product, dimensions, prices) is checked by ingestion. Amounts arrive as
Decimal (the JSON parser never makes floats) or as numeric strings.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime

from apps.core import text
from apps.pricing.api.fields import MAX_QUANTITY
from apps.pricing.errors import InvalidUsage
from apps.pricing.models import BillingMethod
from apps.usage.errors import EventInFuture, EventTooOld, InvalidIdempotencyKey
from apps.usage.ingestion import EventInput, fingerprint
from apps.usage.models import CLOUDEVENT_DETAILS

MAX_KEY_LENGTH = 255
MAX_PLACES = 12
INGESTION_WINDOW_PAST = timedelta(days=30)
INGESTION_WINDOW_FUTURE = timedelta(hours=24)
TEXT_LIMITS = {"product_id": 100, "service_type": 64, "user_id": 255, "session_id": 255}


def parse_quantity(value, name: str, problems: dict) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        problems[name] = "A number (or a numeric string)."
        return None
    try:
        quantity = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        problems[name] = "A number (or a numeric string)."
        return None
    if not quantity.is_finite():
        problems[name] = "Must be finite."
    elif quantity < 0:
        problems[name] = "Must not be negative."
    elif quantity > MAX_QUANTITY:
        problems[name] = f"Must not exceed {MAX_QUANTITY:,}."
    elif quantity.as_tuple().exponent < -MAX_PLACES and quantity != quantity.quantize(
        Decimal(1).scaleb(-MAX_PLACES)
    ):
        problems[name] = f"At most {MAX_PLACES} decimal places."
    else:
        return quantity
    return None


def content_fingerprint(
    *,
    product_id: str | None,
    service_type: str | None = None,
    usage_amount: Decimal | None = None,
    dimensions: dict[str, Decimal] | None = None,
    usage_details: dict | None = None,
    user_id: str = "",
    session_id: str = "",
    billing_method: str | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """The fingerprint of an event's content as every ingestion surface computes it: the
    same content under the same key is a retry, other content a conflict."""
    return fingerprint(
        {
            "product_id": product_id,
            "service_type": service_type,
            "usage_amount": usage_amount,
            "dimensions": dimensions,
            "usage_details": usage_details if usage_details is not None else {},
            "user_id": user_id,
            "session_id": session_id,
            "billing_method": billing_method,
            "occurred_at": occurred_at.isoformat() if occurred_at else None,
        }
    )


def check_ingestion_window(occurred_at: datetime, *, now: datetime) -> None:
    """Raises EventTooOld / EventInFuture for an instant outside what ingestion accepts."""
    if occurred_at < now - INGESTION_WINDOW_PAST:
        raise EventTooOld(details={"occurred_at": occurred_at.isoformat(), "max_age_days": 30})
    if occurred_at > now + INGESTION_WINDOW_FUTURE:
        raise EventInFuture(details={"occurred_at": occurred_at.isoformat(), "max_ahead_hours": 24})


def idempotency_key_of(body_key, header_key: str | None) -> str:
    """``event_id`` in the body or the ``Idempotency-Key`` header (the same if both are
    given); without either, a fresh key, so such a post is never deduplicated."""
    for value in (body_key, header_key):
        if value is not None and (
            not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY_LENGTH
        ):
            raise InvalidIdempotencyKey(details={"idempotency_key": str(value)[:300]})
    if body_key is not None and header_key is not None and body_key != header_key:
        raise InvalidIdempotencyKey(
            "event_id and the Idempotency-Key header differ; send one or the same.",
            details={"event_id": body_key, "idempotency_key": header_key},
        )
    key = body_key if body_key is not None else header_key
    return key if key is not None else f"gen_{uuid.uuid4().hex}"


def parse_event(raw, *, header_key: str | None = None, now: datetime) -> EventInput:
    """An EventInput, or raises InvalidUsage / EventTooOld / EventInFuture /
    InvalidIdempotencyKey naming what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidUsage({"non_field_errors": "An event is a JSON object."})
    unstorable = text.unstorable(raw)  # (headers: the middleware looked at them)
    if unstorable:
        raise InvalidUsage(unstorable)
    key = idempotency_key_of(raw.get("event_id"), header_key)
    problems: dict[str, object] = {}
    texts = {}
    for name, limit in TEXT_LIMITS.items():
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            problems[name] = "A string."
        elif len(value) > limit:
            problems[name] = f"At most {limit} characters."
        else:
            texts[name] = value
    if not texts.get("product_id"):
        problems.setdefault("product_id", "This field is required.")

    usage_amount = None
    if raw.get("usage_amount") is not None:
        usage_amount = parse_quantity(raw["usage_amount"], "usage_amount", problems)
    dimensions = None
    if raw.get("dimensions") is not None:
        if not isinstance(raw["dimensions"], dict) or not raw["dimensions"]:
            problems["dimensions"] = "An object of dimension quantities."
        else:
            dimensions = {}
            for name, value in raw["dimensions"].items():
                quantity = parse_quantity(value, f"dimensions.{name}", problems)
                if quantity is not None:
                    dimensions[str(name)] = quantity
    details = raw.get("usage_details") or {}
    if not isinstance(details, dict):
        problems["usage_details"] = "An object."
    elif CLOUDEVENT_DETAILS in details:  # what /events keeps there, for its meters
        problems[f"usage_details.{CLOUDEVENT_DETAILS}"] = "Reserved for /api/v1/events."
    for name in ("input_tokens", "output_tokens"):
        if isinstance(details, dict) and details.get(name) is not None:
            parse_quantity(details[name], f"usage_details.{name}", problems)

    method = raw.get("billing_method")
    if method is not None and method not in BillingMethod.values:
        problems["billing_method"] = f"One of: {', '.join(BillingMethod.values)}."

    occurred_at = None
    if raw.get("occurred_at") is not None:
        occurred_at = _parse_time(raw["occurred_at"], problems)
    if problems:
        raise InvalidUsage(problems)
    if occurred_at is not None:
        check_ingestion_window(occurred_at, now=now)

    return EventInput(
        idempotency_key=key,
        product_id=texts["product_id"],
        fingerprint=content_fingerprint(
            product_id=texts.get("product_id"),
            service_type=texts.get("service_type"),
            usage_amount=usage_amount,
            dimensions=dimensions,
            usage_details=details,
            user_id=texts.get("user_id", ""),
            session_id=texts.get("session_id", ""),
            billing_method=method,
            occurred_at=occurred_at,
        ),
        usage_amount=usage_amount,
        dimensions=dimensions,
        usage_details=details,
        service_type=texts.get("service_type"),
        user_id=texts.get("user_id", ""),
        session_id=texts.get("session_id", ""),
        billing_method=method,
        occurred_at=occurred_at,
    )


def parse_instant(value) -> datetime | None:
    """An ISO 8601 / RFC 3339 date-time, or None when it is not one (a date that does not
    exist, like February 30, included)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _parse_time(value, problems: dict) -> datetime | None:
    parsed = parse_instant(value)
    if parsed is None:
        problems["occurred_at"] = "An ISO 8601 date-time."
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
