"""JSON in and out, with decimals kept exact.

Answers are read with every JSON number as a ``Decimal`` (never a float); amounts the
portal sends as strings become Decimals where they are read. Requests write Decimals as
plain numeric strings (``"0.000002"``, never ``"2E-6"``), which the portal accepts wherever it
takes a quantity. A float is refused: it cannot carry an amount exactly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Union

Quantity = Union[Decimal, int, str]


def loads(content: bytes | str) -> Any:
    return json.loads(content, parse_float=Decimal)


def dumps(data: Any) -> bytes:
    return json.dumps(data, default=_encode, separators=(",", ":"), sort_keys=True).encode()


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return quantity_text(value)
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def quantity_text(value: Quantity, name: str = "quantity") -> str:
    """A quantity or amount as the plain numeric string the portal reads."""
    if isinstance(value, (bool, float)):
        raise TypeError(
            f"{name} must be a Decimal, an int or a numeric string, not {type(value).__name__} "
            "(a float cannot carry an amount exactly)."
        )
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite.")
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def quantities_text(values: Mapping[str, Quantity], name: str = "dimensions") -> dict[str, str]:
    return {str(key): quantity_text(value, f"{name}.{key}") for key, value in values.items()}


def timestamp_text(value: datetime) -> str:
    """An ISO 8601 instant; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"Expected a decimal amount, got {value!r}")


def optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else decimal(value)


def decimals(values: Mapping[str, Any] | None) -> dict[str, Decimal]:
    return {str(key): decimal(value) for key, value in (values or {}).items()}


def instant(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def day(value: Any) -> date | None:
    if value is None or value == "":
        return None
    return date.fromisoformat(str(value)[:10])
