"""Reads of meters and of what they metered: the events of a meter's type, summed per
window and per group-by value (OpenMeter's meter query).

Sums are exact: PostgreSQL adds numerics; elsewhere (SQLite adds decimals as binary floats)
the stored decimal texts are added in Python, as ``sums`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, DecimalField, Min, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Trunc

from apps.customers.models import Organization
from apps.usage.models import CLOUDEVENT_DETAILS, Meter, UsageEvent

ZERO = Decimal(0)
# OpenMeter's window sizes: the unit events are truncated to, in the query's time zone.
WINDOW_SIZES = {"MINUTE": "minute", "HOUR": "hour", "DAY": "day", "MONTH": "month"}
UTC_ZONE = ZoneInfo("UTC")
FIXED_WINDOWS = {"MINUTE": timedelta(minutes=1), "HOUR": timedelta(hours=1)}


def active_meters_by_type(event_types: set[str]) -> dict[str, Meter]:
    """The active meters reading ``event_types``, by type, with their products."""
    if not event_types:
        return {}
    meters = Meter.objects.select_related("product").filter(
        is_active=True, event_type__in=event_types
    )
    return {meter.event_type: meter for meter in meters}


def meters() -> QuerySet[Meter]:
    return Meter.objects.select_related("product").filter(is_active=True).order_by("slug")


def meter_by_slug(slug: str) -> Meter | None:
    """Any meter, retired or not: what it metered stays readable."""
    return Meter.objects.select_related("product").filter(slug=slug).first()


@dataclass
class MeterRow:
    """One window (None: the whole range) and group: each dimension's sum, the cost of its
    events as charged, how many there were and when the first happened."""

    window_start: datetime | None
    group: dict[str, str | None]
    values: dict[str, Decimal] = field(default_factory=dict)
    cost: Decimal = ZERO
    events: int = 0
    first_at: datetime | None = None


def window_end(start: datetime, window_size: str, tz: ZoneInfo) -> datetime:
    """Where the window of ``window_size`` that starts at ``start`` (local to ``tz``) ends."""
    if window_size in FIXED_WINDOWS:
        return (start.astimezone(UTC) + FIXED_WINDOWS[window_size]).astimezone(tz)
    local = start.astimezone(tz).date()
    if window_size == "DAY":
        following = local + timedelta(days=1)
    else:
        following = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
    return datetime.combine(following, time.min, tz)


def meter_usage(
    *,
    meter: Meter,
    organization: Organization,
    start: datetime | None,
    end: datetime,
    window_size: str | None = None,
    tz: ZoneInfo = UTC_ZONE,
    group_by: list[str] | tuple = (),
    filters: dict[str, str] | None = None,
) -> list[MeterRow]:
    """The usage the meter recorded for ``organization`` in [``start``, ``end``), per
    window (aligned in ``tz``; none: the whole range) and per value of the ``group_by``
    names, only where ``filters`` (name -> value) match; windows and groups without events
    are left out. Rows are ordered by window, then group values."""
    filters = filters or {}
    events = UsageEvent.objects.filter(
        organization=organization,
        product_id=meter.product_id,
        occurred_at__lt=end,
        **{f"usage_details__{CLOUDEVENT_DETAILS}__type": meter.event_type},
    )
    if start is not None:
        events = events.filter(occurred_at__gte=start)
    aliases = {name: f"group_{position}" for position, name in enumerate(group_by)}
    events = events.annotate(
        **{alias: KeyTextTransform(name, "usage_details") for name, alias in aliases.items()}
    )
    # Compared as JSON values (a text transform would be compared as JSON on SQLite).
    matches = {f"filter_{n}": (name, value) for n, (name, value) in enumerate(filters.items())}
    events = events.alias(
        **{alias: KeyTransform(name, "usage_details") for alias, (name, _) in matches.items()}
    ).filter(**{alias: value for alias, (_, value) in matches.items()})
    keys = [aliases[name] for name in group_by]
    if window_size is not None:
        # Minutes and hours are cut in UTC: a local hour repeated when the clocks go back
        # is then two windows, not one (hours of a zone a half hour off UTC are UTC hours).
        cut_in = UTC_ZONE if window_size in FIXED_WINDOWS else tz
        events = events.annotate(
            window=Trunc("occurred_at", WINDOW_SIZES[window_size], tzinfo=cut_in)
        )
        keys.insert(0, "window")
    dimensions = {f"value_{n}": dimension for n, dimension in enumerate(meter.dimensions)}

    rows: dict[tuple, MeterRow] = {}

    def row_of(values: dict) -> MeterRow:
        key = tuple(values[k] for k in keys)
        if key not in rows:
            rows[key] = MeterRow(
                window_start=values.get("window"),
                group={name: values[aliases[name]] for name in group_by},
                values=dict.fromkeys(dimensions.values(), ZERO),
            )
        return rows[key]

    if connection.vendor == "postgresql":
        sums = {
            alias: Sum(
                Cast(
                    KeyTextTransform(dimension, "quantities"),
                    DecimalField(max_digits=28, decimal_places=12),
                )
            )
            for alias, dimension in dimensions.items()
        }
        totals = {
            **sums,
            "cost": Sum("billing_record__total_amount"),
            "events": Count("id"),
            "first_at": Min("occurred_at"),
        }
        if keys:
            found = events.values(*keys).annotate(**totals).order_by()
        else:  # one row for everything (``values()`` without names would group by each row)
            found = [total] if (total := events.aggregate(**totals))["events"] else []
        for values in found:
            row = row_of(values)
            for alias, dimension in dimensions.items():
                row.values[dimension] = values[alias] or ZERO
            row.cost, row.events, row.first_at = (
                values["cost"] or ZERO,
                values["events"],
                values["first_at"],
            )
    else:
        texts = {alias: KeyTextTransform(dim, "quantities") for alias, dim in dimensions.items()}
        columns = [*keys, *texts, "billing_record__total_amount", "occurred_at"]
        for values in events.annotate(**texts).values(*columns).order_by().iterator(5000):
            row = row_of(values)
            for alias, dimension in dimensions.items():
                if values[alias] is not None:
                    row.values[dimension] += Decimal(str(values[alias]))
            row.cost += values["billing_record__total_amount"] or ZERO
            row.events += 1
            if row.first_at is None or values["occurred_at"] < row.first_at:
                row.first_at = values["occurred_at"]

    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(
        rows.values(),
        key=lambda row: (
            row.window_start or epoch,
            tuple((value is not None, value or "") for value in row.group.values()),
        ),
    )
