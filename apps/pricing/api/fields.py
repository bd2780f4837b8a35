"""Request fields shared by the API's views: quantities and currencies."""

from decimal import Decimal

from rest_framework import serializers

from apps.pricing.currencies import is_currency

MAX_QUANTITY = Decimal(10) ** 15


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
