"""Amounts and quantities as the customer pages show them, in the organisation's currency.

Display only: an amount is rounded to the currency's minor unit by the cost engine's one
rule (half away from zero); ``precise`` keeps the fractions of a cent a single event
costs. Never through float.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django import template

from apps.pricing.cost_engine import CONTEXT, round_money
from apps.pricing.currencies import UnknownCurrency, minor_units

register = template.Library()

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩", "BRL": "R$",
           "CAD": "CA$", "AUD": "A$", "CHF": "CHF "}  # fmt: skip


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None


def _grouped(amount: Decimal, places: int) -> str:
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):,.{places}f}"
    return sign + text


def _with_symbol(text: str, currency: str) -> str:
    symbol = SYMBOLS.get(currency)
    if symbol is None:
        return f"{text} {currency}"
    if text.startswith("-"):
        return f"-{symbol}{text[1:]}"
    return f"{symbol}{text}"


@register.filter
def money(value, currency: str = "USD") -> str:
    """``1234.5`` in USD → ``$1,234.50`` (rounded to the minor unit)."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    currency = (currency or "USD").upper()
    try:
        places = minor_units(currency)
    except UnknownCurrency:
        return f"{value} {currency}"
    return _with_symbol(_grouped(round_money(amount, currency), places), currency)


@register.filter
def precise(value, currency: str = "USD") -> str:
    """An amount with up to six decimals: what one event cost (``$0.000345``)."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    currency = (currency or "USD").upper()
    places = max(minor_units(currency), min(6, -amount.normalize(CONTEXT).as_tuple().exponent))
    return _with_symbol(_grouped(amount.quantize(Decimal(1).scaleb(-places)), places), currency)


@register.filter
def quantity(value) -> str:
    """``1500000`` → ``1,500,000``; ``2.50`` → ``2.5``."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    normalized = amount.normalize(CONTEXT)
    places = max(0, -normalized.as_tuple().exponent)
    return _grouped(normalized, min(places, 6))


@register.filter
def percent_of(spent, limit) -> str:
    """A bar's width: ``spent`` as a percentage of ``limit``, capped to 0-100."""
    spent, limit = _decimal(spent), _decimal(limit)
    if spent is None or not limit:
        return "100" if spent else "0"
    share = max(Decimal(0), min(Decimal(100), spent * 100 / limit))
    return str(share.quantize(Decimal("0.1")))


@register.filter
def last_day(end):
    """The last moment before an exclusive period end (shown as the period's last day)."""
    if not end:
        return end
    return end - timedelta(microseconds=1)
