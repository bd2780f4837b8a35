"""Request fields shared by the API's views: quantities, currencies, days and instants."""

from datetime import UTC, date, datetime
from decimal import Decimal

from rest_framework import serializers

from apps.pricing.currencies import is_currency

MAX_QUANTITY = Decimal(10) ** 15
# Days and instants a request may name: wide enough for any real question, far from the
# calendar's ends, where the day or month after (or before) one no longer exists.
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2999, 12, 31)


class QuantityField(serializers.DecimalField):
    """A non-negative, finite quantity up to 10^15 with at most 12 decimal places; NaN,
    infinities and floats never get here (the JSON parser reads numbers as Decimal)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 28)
        kwargs.setdefault("decimal_places", 12)
        kwargs.setdefault("min_value", Decimal(0))
        kwargs.setdefault("max_value", MAX_QUANTITY)
        super().__init__(**kwargs)


class CurrencyField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 3)
        kwargs.setdefault("min_length", 3)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data).upper()
        if not is_currency(value):
            raise serializers.ValidationError(f"{value!r} is not an ISO 4217 currency code.")
        return value


class DimensionQuantitiesField(serializers.DictField):
    def __init__(self, **kwargs):
        kwargs.setdefault("child", QuantityField())
        super().__init__(**kwargs)


def _within_calendar(day: date) -> None:
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise serializers.ValidationError(f"Must lie between {EARLIEST_DAY} and {LATEST_DAY}.")


class CalendarDateField(serializers.DateField):
    """A day between ``EARLIEST_DAY`` and ``LATEST_DAY``."""

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        _within_calendar(day)
        return day


class InstantField(serializers.DateTimeField):
    """An instant whose UTC day lies between ``EARLIEST_DAY`` and ``LATEST_DAY``."""

    def to_internal_value(self, value):
        instant = super().to_internal_value(value)
        _within_calendar(instant.astimezone(UTC).date() if isinstance(instant, datetime)
                         else instant)  # fmt: skip
        return instant
