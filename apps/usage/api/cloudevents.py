"""Reading CloudEvents 1.0 into usage events: OpenMeter's ingestion contract.

An event's ``id`` is its idempotency key; ``subject`` the organisation (its slug, the
``organization_id`` of the rest of the API); ``type`` picks the meter; ``time`` is when the
usage happened (RFC 3339; default: when it is received); ``data`` holds the meter's values
and group-by fields. Each becomes an EventInput for ``ingestion.ingest``, so an event is
priced, paid, counted against budgets and deduplicated exactly like one sent to
``usage/record``; nothing here prices or enforces anything.

What is stored: the meter's dimensions as the event's quantities (a COUNT meter: one unit
of the product's first dimension); the group-by values, as text, as keys of
``usage_details`` (``user_id`` and ``session_id`` also fill the event's own fields, so the
daily rollup groups by them); and the CloudEvent's ``type``, ``source`` and ``data`` under
``usage_details["cloudevent"]``, which is how a meter finds its events again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from apps.core import text as storable
from apps.core.errors import PortalError
from apps.customers.api.tenancy import organization_for_subject
from apps.customers.models import ApiKey, Organization
from apps.pricing.cost_engine import format_quantity
from apps.pricing.errors import InvalidUsage
from apps.usage.api.parsing import (
    MAX_KEY_LENGTH,
    check_ingestion_window,
    parse_instant,
    parse_quantity,
)
from apps.usage.errors import InvalidEvent, InvalidMeterData, UnknownEventType
from apps.usage.ingestion import EventInput, Outcome, fingerprint, ingest
from apps.usage.meters import active_meters_by_type
from apps.usage.models import CLOUDEVENT_DETAILS, BillingRecord, Meter, path_keys

SPEC_VERSION = "1.0"
MAX_TEXT = 255
_MISSING = object()


@dataclass(frozen=True)
class CloudEventResult:
    """What became of one event of a post: accepted, duplicate (with its billing record)
    or rejected (with its error)."""

    index: int
    id: str | None
    status: str
    record: BillingRecord | None = None
    error: PortalError | None = None


def read_path(data, path: str):
    """The value at a ``$.a.b`` path of ``data``, or ``_MISSING``."""
    value = data
    for key in path_keys(path):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _text(raw: dict, name: str, problems: dict, *, required: bool, limit: int = MAX_TEXT):
    value = raw.get(name)
    if value is None:
        if required:
            problems[name] = "This field is required."
        return None
    if not isinstance(value, str) or not value.strip():
        problems[name] = "A non-empty string."
    elif len(value) > limit:
        problems[name] = f"At most {limit} characters."
    else:
        return value
    return None


def _group_value(value) -> str | None:
    """A group-by value as the text it is grouped by; None for anything not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return format_quantity(Decimal(value))
    if isinstance(value, str):
        return value
    return None


def parse_cloud_event(raw, *, meters: dict[str, Meter], now: datetime) -> tuple[str, EventInput]:
    """(subject, EventInput) of one CloudEvent, or raises InvalidEvent, UnknownEventType,
    InvalidMeterData, EventTooOld or EventInFuture."""
    if not isinstance(raw, dict):
        raise InvalidEvent({"non_field_errors": "An event is a JSON object."})
    unstorable = storable.unstorable(raw)
    if unstorable:  # the same answer as on every surface
        raise InvalidUsage(unstorable)
    problems: dict[str, object] = {}
    event_id = _text(raw, "id", problems, required=True, limit=MAX_KEY_LENGTH)
    subject = _text(raw, "subject", problems, required=True)
    event_type = _text(raw, "type", problems, required=True)
    source = _text(raw, "source", problems, required=False)
    if "specversion" in raw and raw["specversion"] != SPEC_VERSION:
        problems["specversion"] = f'Must be "{SPEC_VERSION}".'
    occurred_at = None
    if raw.get("time") is not None:
        parsed = parse_instant(raw["time"])
        if parsed is None:
            problems["time"] = "An RFC 3339 date-time."
        else:
            occurred_at = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    data = raw.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        problems["data"] = "A JSON object."
    if problems:
        raise InvalidEvent(problems)

    meter = meters.get(event_type)
    if meter is None:
        raise UnknownEventType(details={"type": event_type})
    if occurred_at is not None:
        check_ingestion_window(occurred_at, now=now)

    dimensions: dict[str, Decimal] = {}
    if meter.aggregation == Meter.Aggregation.COUNT:
        dimensions[meter.product.default_dimension] = Decimal(1)
    else:
        for dimension in meter.dimensions:
            path = meter.value_properties[dimension]
            value = read_path(data, path)
            if value is _MISSING or value is None:
                problems[path] = "Missing: the meter reads this value."
                continue
            quantity = parse_quantity(value, path, problems)
            if quantity is not None:
                dimensions[dimension] = quantity
    groups: dict[str, str] = {}
    for name, path in meter.group_by.items():
        value = read_path(data, path)
        if value is _MISSING or value is None:
            continue  # grouped under null, as OpenMeter does
        text = _group_value(value)
        if text is None:
            problems[path] = "A string, number or boolean."
        elif len(text) > MAX_TEXT:
            problems[path] = f"At most {MAX_TEXT} characters."
        else:
            groups[name] = text
    if problems:
        raise InvalidMeterData(problems)

    cloudevent = {"type": event_type, "data": data}
    if source is not None:
        cloudevent["source"] = source
    usage_details = {**groups, CLOUDEVENT_DETAILS: cloudevent}
    user_id, session_id = groups.get("user_id", ""), groups.get("session_id", "")
    product_code = meter.product.code
    event = EventInput(
        idempotency_key=event_id,
        product_id=product_code,
        # The event as its producer sent it (not as the meter reads it): a retry after
        # staff edited the meter is still the same event.
        fingerprint=fingerprint(
            {
                "cloudevent": {
                    "type": event_type,
                    "source": source,
                    "subject": subject,
                    "time": raw.get("time"),
                    "data": data,
                }
            }  # fmt: skip
        ),
        dimensions=dimensions,
        usage_details=usage_details,
        user_id=user_id,
        session_id=session_id,
        occurred_at=occurred_at,
    )
    return subject, event


def record_cloud_events(
    raw_events: list, *, api_key: ApiKey | None, now: datetime, actor: str
) -> list[CloudEventResult]:
    """Records CloudEvents for the organisations their subjects name (``api_key`` may act
    for; None: any, for the portal's own callers) through ``ingestion.ingest``, one call
    per organisation, in order. One result per event; a bad event never stops the others.
    """
    types = {
        raw["type"]
        for raw in raw_events
        if isinstance(raw, dict) and isinstance(raw.get("type"), str)
        and not storable.problem(raw["type"])
    }  # fmt: skip
    meters = active_meters_by_type(types)
    organizations: dict[str, Organization | PortalError] = {}
    results: list[CloudEventResult | None] = [None] * len(raw_events)
    groups: dict[int, tuple[Organization, list[tuple[int, EventInput]]]] = {}
    for index, raw in enumerate(raw_events):
        try:
            subject, event = parse_cloud_event(raw, meters=meters, now=now)
            if subject not in organizations:
                try:
                    organizations[subject] = organization_for_subject(subject, api_key=api_key)
                except PortalError as error:
                    organizations[subject] = error
            organization = organizations[subject]
            if isinstance(organization, PortalError):
                raise organization
        except PortalError as error:
            results[index] = CloudEventResult(index, _id_of(raw), Outcome.REJECTED, error=error)
            continue
        groups.setdefault(organization.pk, (organization, []))[1].append((index, event))

    for organization, members in groups.values():
        outcomes = ingest(
            organization=organization,
            events=[event for _, event in members],
            api_key=api_key,
            actor=actor,
        )
        for (index, event), outcome in zip(members, outcomes, strict=True):
            results[index] = CloudEventResult(
                index, event.idempotency_key, outcome.status, outcome.record, outcome.error
            )
    return results


def _id_of(raw) -> str | None:
    event_id = raw.get("id") if isinstance(raw, dict) else None
    return storable.shown(event_id) if isinstance(event_id, str) else None
