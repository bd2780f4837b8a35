"""Exact sums of decimal columns: SUM on PostgreSQL (numeric), in Python over the stored
decimals elsewhere (SQLite sums decimals as binary floats)."""

from __future__ import annotations

from decimal import Decimal

from django.db import connection
from django.db.models import Sum

ZERO = Decimal(0)


def exact_sum(queryset, field: str) -> Decimal:
    if connection.vendor == "postgresql":
        return queryset.aggregate(total=Sum(field))["total"] or ZERO
    return sum((value for value in queryset.values_list(field, flat=True).iterator(5000)), ZERO)


def exact_sums(queryset, keys: str | list[str], field: str) -> dict:
    """``{key: sum}`` per value of ``keys`` (one field name, or a list: tuple keys)."""
    names = [keys] if isinstance(keys, str) else list(keys)

    def key_of(row):
        return row[0] if isinstance(keys, str) else tuple(row[: len(names)])

    if connection.vendor == "postgresql":
        rows = queryset.values(*names).annotate(total=Sum(field)).values_list(*names, "total")
        return {key_of(row): row[-1] or ZERO for row in rows.order_by()}
    totals: dict = {}
    for row in queryset.values_list(*names, field).iterator(5000):
        key = key_of(row)
        totals[key] = totals.get(key, ZERO) + (row[-1] or ZERO)
    return totals
