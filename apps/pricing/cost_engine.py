"""The cost engine: pure functions of Decimals, no database, no float.

Two layers:

* **Period totals** — what a quantity used in one billing period costs under a pricing
  model: ``per_unit_total``, ``graduated_total``, ``volume_total``, ``package_total``.
  Statements bill these.
* **Event costs** — what one event adds, given what the period had already used before it
  (``period_to_date``): the difference of the period total before and after the event.
  For per-unit, graduated and package pricing the event costs of a period add up exactly to
  the period total. Volume pricing re-prices *every* unit of the period when a threshold is
  crossed, which would make the crossing event negative; an event is never negative, so
  the statement carries the volume discount as a credit line (the period total is less
  than or equal to the sum of its events).

A free allowance takes the period's first units; the pricing model applies to what is
beyond it. Units the plan includes (``included``) are taken out before the price rule and
cost nothing. A minimum charge is per period: ``minimum_true_up`` says what a statement
adds when the period's charges fall short of it.

Per-event amounts keep full precision. Rounding to the currency's minor unit happens once,
on statement and invoice lines, with ``round_money``: ROUND_HALF_UP (commercial rounding,
half a minor unit rounds away from zero).
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from apps.pricing.currencies import minor_unit_quantum

ZERO = Decimal(0)
# Enough significant digits for 10^15 units at 12 decimal places of unit price.
CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_UP, traps=[decimal.InvalidOperation])


class PricingModel:
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"

    ALL = (PER_UNIT, GRADUATED, VOLUME, PACKAGE)


class InvalidTerms(ValueError):
    """The terms of a price rule are inconsistent (tiers out of order, no package size)."""


@dataclass(frozen=True)
class Tier:
    """Units up to ``up_to`` (inclusive; None = without end) at ``unit_price`` each, plus
    ``flat_fee`` once the tier is reached."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO


@dataclass(frozen=True)
class Terms:
    """What a price rule says, as the engine needs it."""

    model: str
    unit_price: Decimal = ZERO
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal = ZERO
    free_allowance: Decimal = ZERO
    minimum_charge: Decimal = ZERO

    def __post_init__(self) -> None:
        validate_terms(self)


@dataclass(frozen=True)
class DimensionCost:
    dimension: str
    quantity: Decimal
    included_quantity: Decimal
    free_quantity: Decimal
    billable_quantity: Decimal
    unit_price: Decimal  # effective price per billable unit of this event
    amount: Decimal
    pricing_model: str


@dataclass(frozen=True)
class CostBreakdown:
    lines: tuple[DimensionCost, ...]
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum((line.amount for line in self.lines), ZERO))

    @property
    def quantity(self) -> Decimal:
        return sum((line.quantity for line in self.lines), ZERO)

    @property
    def included_quantity(self) -> Decimal:
        return sum((line.included_quantity for line in self.lines), ZERO)

    @property
    def free_quantity(self) -> Decimal:
        return sum((line.free_quantity for line in self.lines), ZERO)

    @property
    def billable_quantity(self) -> Decimal:
        return sum((line.billable_quantity for line in self.lines), ZERO)


# --- validation ------------------------------------------------------------------------


def validate_tiers(tiers: Sequence[Tier]) -> None:
    """Tiers must be ascending, contiguous from zero and end without a bound."""
    if not tiers:
        raise InvalidTerms("Tiered pricing needs at least one tier.")
    previous = ZERO
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.unit_price < 0 or tier.flat_fee < 0:
            raise InvalidTerms("Tier prices and fees cannot be negative.")
        if tier.up_to is None:
            if not last:
                raise InvalidTerms("Only the last tier may be without an upper bound.")
            continue
        if tier.up_to <= previous:
            raise InvalidTerms("Tier bounds must be ascending and above zero.")
        previous = tier.up_to
    if tiers[-1].up_to is not None:
        raise InvalidTerms("The last tier must be without an upper bound.")


def validate_terms(terms: Terms) -> None:
    if terms.model not in PricingModel.ALL:
        raise InvalidTerms(f"Unknown pricing model {terms.model!r}.")
    for name in ("unit_price", "package_price", "free_allowance", "minimum_charge"):
        value = getattr(terms, name)
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise InvalidTerms(f"{name} must be a finite, non-negative Decimal.")
    if terms.model in (PricingModel.GRADUATED, PricingModel.VOLUME):
        validate_tiers(terms.tiers)
    if terms.model == PricingModel.PACKAGE and (
        terms.package_size is None or terms.package_size <= 0
    ):
        raise InvalidTerms("Package pricing needs a package size above zero.")


def _check_quantity(quantity: Decimal, name: str = "quantity") -> None:
    if not isinstance(quantity, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(quantity).__name__}.")
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"{name} must be finite and non-negative.")


# --- period totals ---------------------------------------------------------------------


def per_unit_total(quantity: Decimal, unit_price: Decimal) -> Decimal:
    return CONTEXT.multiply(quantity, unit_price)


def graduated_pieces(quantity: Decimal, tiers: Sequence[Tier]) -> list[tuple[Decimal, Decimal]]:
    """(units, amount) of each tier for ``quantity``: each unit priced by the tier it is in."""
    pieces: list[tuple[Decimal, Decimal]] = []
    lower = ZERO
    for tier in tiers:
        if quantity <= lower:
            pieces.append((ZERO, ZERO))
            continue
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = CONTEXT.subtract(upper, lower)
        pieces.append((units, CONTEXT.add(CONTEXT.multiply(units, tier.unit_price), tier.flat_fee)))
        lower = tier.up_to if tier.up_to is not None else quantity
    return pieces


def graduated_total(quantity: Decimal, tiers: Sequence[Tier]) -> Decimal:
    return sum((amount for _, amount in graduated_pieces(quantity, tiers)), ZERO)


def volume_tier(quantity: Decimal, tiers: Sequence[Tier]) -> Tier:
    """The tier whose range holds ``quantity``: its price applies to every unit."""
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return tier
    return tiers[-1]


def volume_total(quantity: Decimal, tiers: Sequence[Tier]) -> Decimal:
    if quantity == 0:
        return ZERO
    tier = volume_tier(quantity, tiers)
    return CONTEXT.add(CONTEXT.multiply(quantity, tier.unit_price), tier.flat_fee)


def package_count(quantity: Decimal, package_size: Decimal) -> Decimal:
    """Packages needed for ``quantity``: a started package counts whole."""
    return CONTEXT.divide(quantity, package_size).to_integral_value(rounding=ROUND_CEILING)


def package_total(quantity: Decimal, package_size: Decimal, package_price: Decimal) -> Decimal:
    return CONTEXT.multiply(package_count(quantity, package_size), package_price)


def period_total(terms: Terms, quantity: Decimal) -> Decimal:
    """What ``quantity`` units used in one period cost (after the free allowance)."""
    _check_quantity(quantity)
    billable = max(ZERO, CONTEXT.subtract(quantity, terms.free_allowance))
    if terms.model == PricingModel.PER_UNIT:
        return per_unit_total(billable, terms.unit_price)
    if terms.model == PricingModel.GRADUATED:
        return graduated_total(billable, terms.tiers)
    if terms.model == PricingModel.VOLUME:
        return volume_total(billable, terms.tiers)
    return package_total(billable, terms.package_size, terms.package_price)


def minimum_true_up(period_amount: Decimal, minimum_charge: Decimal) -> Decimal:
    """What a statement adds so that a period's charges reach the minimum."""
    return max(ZERO, CONTEXT.subtract(minimum_charge, period_amount))


# --- event costs -----------------------------------------------------------------------


def _listed_unit_price(terms: Terms, position: Decimal) -> Decimal:
    """The rule's price per unit at a position in the period (for display)."""
    if terms.model == PricingModel.PER_UNIT:
        return terms.unit_price
    if terms.model == PricingModel.PACKAGE:
        return CONTEXT.divide(terms.package_price, terms.package_size)
    # Graduated and volume: the tier the period's position falls in.
    billable = max(ZERO, CONTEXT.subtract(position, terms.free_allowance))
    return volume_tier(billable, terms.tiers).unit_price


def price_event(
    *,
    terms: Terms,
    dimension: str,
    quantity: Decimal,
    period_to_date: Decimal = ZERO,
    included: Decimal = ZERO,
) -> DimensionCost:
    """What ``quantity`` units of one event cost.

    ``period_to_date``: billable-side units the period had used before this event (units the
    plan included are not counted there). ``included``: units of this event the plan still
    includes; they cost nothing and are not priced by the rule.
    """
    _check_quantity(quantity)
    _check_quantity(period_to_date, "period_to_date")
    _check_quantity(included, "included")
    included_part = min(quantity, included)
    priced = CONTEXT.subtract(quantity, included_part)
    before, after = period_to_date, CONTEXT.add(period_to_date, priced)

    free_before = min(before, terms.free_allowance)
    free_after = min(after, terms.free_allowance)
    free_part = CONTEXT.subtract(free_after, free_before)
    billable = CONTEXT.subtract(priced, free_part)

    if terms.model == PricingModel.PER_UNIT:
        # Linear: the difference of the period totals is the billable units at the price.
        amount = CONTEXT.multiply(billable, terms.unit_price)
    else:
        amount = max(
            ZERO, CONTEXT.subtract(period_total(terms, after), period_total(terms, before))
        )
    if billable > 0:
        unit_price = CONTEXT.divide(amount, billable)
    else:
        unit_price = _listed_unit_price(terms, after)
    return DimensionCost(
        dimension=dimension,
        quantity=quantity,
        included_quantity=included_part,
        free_quantity=free_part,
        billable_quantity=billable,
        unit_price=unit_price.normalize(CONTEXT) if unit_price else ZERO,
        amount=amount,
        pricing_model=terms.model,
    )


def price_dimensions(
    *,
    terms_by_dimension: Mapping[str, Terms],
    quantities: Mapping[str, Decimal],
    period_to_date: Mapping[str, Decimal] | None = None,
    included: Decimal = ZERO,
) -> CostBreakdown:
    """Prices every dimension of one event. The plan's remaining inclusion ``included`` is
    shared by the dimensions in the order given (e.g. input tokens before output tokens)."""
    period_to_date = period_to_date or {}
    lines = []
    remaining_included = included
    for dimension, quantity in quantities.items():
        if dimension not in terms_by_dimension:
            raise KeyError(dimension)
        line = price_event(
            terms=terms_by_dimension[dimension],
            dimension=dimension,
            quantity=quantity,
            period_to_date=period_to_date.get(dimension, ZERO),
            included=remaining_included,
        )
        remaining_included = CONTEXT.subtract(remaining_included, line.included_quantity)
        lines.append(line)
    return CostBreakdown(lines=tuple(lines))


# --- money -----------------------------------------------------------------------------


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Rounds ``amount`` to ``currency``'s minor unit, half away from zero (ROUND_HALF_UP).

    The one rounding rule of the portal, applied once per statement or invoice line and
    nowhere else: per-event costs keep full precision.
    """
    return amount.quantize(minor_unit_quantum(currency), rounding=ROUND_HALF_UP, context=CONTEXT)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """A rounded amount as an integer count of minor units (what Stripe takes)."""
    rounded = round_money(amount, currency)
    return int(rounded.scaleb(-minor_unit_quantum(currency).as_tuple().exponent))


def from_minor_units(minor: int, currency: str) -> Decimal:
    """An integer count of minor units (what Stripe sends) as an amount."""
    return Decimal(minor).scaleb(minor_unit_quantum(currency).as_tuple().exponent)


def format_amount(amount: Decimal, currency: str) -> str:
    """An amount as a string without float: at least the currency's minor digits, more if
    the amount carries them (per-event costs are often fractions of a cent)."""
    quantum = minor_unit_quantum(currency)
    normalized = amount.normalize(CONTEXT)
    if normalized.as_tuple().exponent >= quantum.as_tuple().exponent:
        return str(amount.quantize(quantum, context=CONTEXT))
    return format(normalized, "f")


def format_quantity(quantity: Decimal) -> str:
    """A quantity as a plain string: "1000", "2.5" (no exponent, no trailing zeros)."""
    normalized = quantity.normalize(CONTEXT)
    text = format(normalized, "f")
    return text
