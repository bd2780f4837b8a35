"""One-dimensional PostgreSQL arrays as their text form, for an ``%s::type[]`` parameter.

psycopg adapts a Python list by looking for its element type, choosing a dumper and
dumping element by element, which for the few short arrays of a single event's snapshot
and hot statement costs more Python time than the rest of building them. ``text`` writes
the array's input form (``{1,2}``, ``{"a","b\\"c"}``, ``{NULL}``) in one pass; the
statement's cast gives it its type, as it would a list.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal


def _quoted(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _element(value) -> str:
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        return _quoted(value)
    if kind is int or kind is Decimal:
        return str(value)
    if isinstance(value, datetime | date):
        return f'"{value.isoformat()}"'
    if isinstance(value, str):
        return _quoted(str(value))  # a str subclass (a TextChoices member)
    if isinstance(value, int | Decimal):
        return str(value)
    raise TypeError(f"No array text for {kind.__name__}.")


def text(values: Iterable) -> str:
    """The text form of the array of ``values``: str, int, Decimal, datetime, date or None."""
    return "{" + ",".join(map(_element, values)) + "}"
