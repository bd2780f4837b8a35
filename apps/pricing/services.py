"""Writes of the catalog: service types, products, plans and versioned prices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from apps.pricing import cost_engine as engine
from apps.pricing.errors import PriceVersionOverlap
from apps.pricing.models import (
    BuiltinServiceType,
    Plan,
    PriceRule,
    PriceTier,
    Product,
    ServiceType,
)
from apps.pricing.selectors import CATALOG

ZERO = Decimal(0)


def invalidate_pricing_cache() -> None:
    """Starts a new catalog generation now and again once the transaction commits: a
    reader that cached the old catalog in between (it could not yet see the change) is
    superseded by the second one."""
    CATALOG.invalidate()


def ensure_builtin_service_types(service_type_model=ServiceType) -> None:
    """Creates seed 003's service types if missing (also run by a data migration, which
    passes its historical model)."""
    for choice in BuiltinServiceType:
        service_type_model.objects.update_or_create(
            code=choice.value, defaults={"name": choice.label, "is_builtin": True}
        )


@dataclass(frozen=True)
class TierSpec:
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO


def validate_terms(
    *,
    pricing_model: str,
    unit_price: Decimal = ZERO,
    tiers: Sequence[TierSpec] = (),
    package_size: Decimal | None = None,
    package_price: Decimal = ZERO,
    free_allowance: Decimal = ZERO,
    minimum_charge: Decimal = ZERO,
) -> engine.Terms:
    """The engine's terms for these values; ValidationError with the reason if they are
    inconsistent (tiers out of order, package without a size, negative amounts)."""
    try:
        return engine.Terms(
            model=pricing_model,
            unit_price=unit_price,
            tiers=tuple(engine.Tier(t.up_to, t.unit_price, t.flat_fee) for t in tiers),
            package_size=package_size,
            package_price=package_price,
            free_allowance=free_allowance,
            minimum_charge=minimum_charge,
        )
    except engine.InvalidTerms as error:
        raise ValidationError(str(error)) from None


def overlapping_versions(
    *,
    plan: Plan | None,
    product: Product,
    dimension: str,
    effective_from: datetime,
    effective_to: datetime | None,
    exclude_pk: int | None = None,
):
    """Versions of the same price whose time range meets [effective_from, effective_to)."""
    queryset = PriceRule.objects.filter(plan=plan, product=product, dimension=dimension).filter(
        Q(effective_to__isnull=True) | Q(effective_to__gt=effective_from)
    )
    if effective_to is not None:
        queryset = queryset.filter(effective_from__lt=effective_to)
    if exclude_pk is not None:
        queryset = queryset.exclude(pk=exclude_pk)
    return queryset


@transaction.atomic
def create_price_version(
    *,
    plan: Plan | None,
    product: Product,
    dimension: str,
    pricing_model: str,
    effective_from: datetime,
    effective_to: datetime | None = None,
    unit_price: Decimal = ZERO,
    tiers: Sequence[TierSpec] = (),
    package_size: Decimal | None = None,
    package_price: Decimal = ZERO,
    free_allowance: Decimal = ZERO,
    minimum_charge: Decimal = ZERO,
) -> PriceRule:
    """Adds a version of the price of ``product``'s ``dimension`` for ``plan`` (None: the
    catalog default), in force from ``effective_from``.

    An open-ended version is a price change: the version in force at ``effective_from`` ends
    there, so earlier instants keep their price. A bounded version (a promotion) must fit
    in time no other version covers. Raises ValidationError for an unknown dimension or
    inconsistent terms, PriceVersionOverlap when another version (e.g. a scheduled one)
    would cover part of the same time.
    """
    if dimension not in product.dimensions:
        raise ValidationError({"dimension": f"{product.code} has no dimension {dimension!r}."})
    if effective_to is not None and effective_to <= effective_from:
        raise ValidationError({"effective_to": "Must be after effective_from."})
    validate_terms(
        pricing_model=pricing_model,
        unit_price=unit_price,
        tiers=tiers,
        package_size=package_size,
        package_price=package_price,
        free_allowance=free_allowance,
        minimum_charge=minimum_charge,
    )
    _make_room_for(
        plan=plan,
        product=product,
        dimension=dimension,
        effective_from=effective_from,
        effective_to=effective_to,
    )
    rule = PriceRule.objects.create(
        plan=plan,
        product=product,
        dimension=dimension,
        pricing_model=pricing_model,
        unit_price=unit_price,
        package_size=package_size,
        package_price=package_price,
        free_allowance=free_allowance,
        minimum_charge=minimum_charge,
        effective_from=effective_from,
        effective_to=effective_to,
    )
    bulk_create_with_history(
        [PriceTier(rule=rule, up_to=t.up_to, unit_price=t.unit_price, flat_fee=t.flat_fee)
         for t in tiers],
        PriceTier,
    )  # fmt: skip
    invalidate_pricing_cache()
    return rule


def versions_in_the_way(
    *,
    plan: Plan | None,
    product: Product,
    dimension: str,
    effective_from: datetime,
    effective_to: datetime | None,
    exclude_pk: int | None = None,
) -> list[PriceRule]:
    """Versions a new one would overlap, the version it would end (if open-ended) aside."""
    clashing = overlapping_versions(
        plan=plan,
        product=product,
        dimension=dimension,
        effective_from=effective_from,
        effective_to=effective_to,
        exclude_pk=exclude_pk,
    )
    if effective_to is None:
        clashing = clashing.exclude(effective_from__lt=effective_from)
    return list(clashing[:5])


def _make_room_for(
    *,
    plan: Plan | None,
    product: Product,
    dimension: str,
    effective_from: datetime,
    effective_to: datetime | None,
    exclude_pk: int | None = None,
) -> None:
    """Ends the version in force at ``effective_from`` (when the new one is open-ended) and
    raises PriceVersionOverlap if any other version still meets the new one's time."""
    # One writer at a time per product: two concurrent changes cannot both pass the overlap
    # check below.
    Product.objects.select_for_update().get(pk=product.pk)
    if effective_to is None:
        in_force = (
            PriceRule.objects.filter(
                plan=plan, product=product, dimension=dimension, effective_from__lt=effective_from
            )
            .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=effective_from))
            .exclude(pk=exclude_pk)
            .first()
        )
        if in_force is not None:
            in_force.effective_to = effective_from
            in_force.save(update_fields=["effective_to"])
    clashing = overlapping_versions(
        plan=plan,
        product=product,
        dimension=dimension,
        effective_from=effective_from,
        effective_to=effective_to,
        exclude_pk=exclude_pk,
    )
    if clashing.exists():
        raise PriceVersionOverlap(details={"overlaps": [str(rule) for rule in clashing[:5]]})


@transaction.atomic
def save_price_version(*, rule: PriceRule, tiers: Sequence[TierSpec] | None = None) -> PriceRule:
    """Saves a version staff composed (the admin's form): a new one takes its place in time
    like ``create_price_version``; an existing one may change only before it takes effect.
    ``tiers`` replaces the version's tiers when given. Raises ValidationError and
    PriceVersionOverlap."""
    if rule.pk is not None:
        stored = PriceRule.objects.get(pk=rule.pk)
        if stored.effective_from <= timezone.now():
            raise ValidationError("A version in force or past cannot change; add a new one.")
    if rule.dimension not in rule.product.dimensions:
        raise ValidationError({"dimension": f"{rule.product.code} has no {rule.dimension!r}."})
    if tiers is not None:
        validate_terms(
            pricing_model=rule.pricing_model,
            unit_price=rule.unit_price,
            tiers=tiers,
            package_size=rule.package_size,
            package_price=rule.package_price,
            free_allowance=rule.free_allowance,
            minimum_charge=rule.minimum_charge,
        )
    _make_room_for(
        plan=rule.plan,
        product=rule.product,
        dimension=rule.dimension,
        effective_from=rule.effective_from,
        effective_to=rule.effective_to,
        exclude_pk=rule.pk,
    )
    rule.save()
    if tiers is not None:
        for tier in rule.tiers.all():  # one by one: each removal is in the audit history
            tier.delete()
        bulk_create_with_history(
            [PriceTier(rule=rule, up_to=t.up_to, unit_price=t.unit_price, flat_fee=t.flat_fee)
             for t in tiers],
            PriceTier,
        )  # fmt: skip
    invalidate_pricing_cache()
    return rule


def tiers_from_text(text: str) -> list[TierSpec]:
    """Tiers written as ``up_to:unit_price[:flat_fee]`` separated by ``|``, the last bound
    ``inf`` (the price-sheet file format): ``1000:0.002|inf:0.001``."""
    tiers = []
    for part in filter(None, (piece.strip() for piece in text.split("|"))):
        fields = part.split(":")
        if len(fields) not in (2, 3):
            raise ValidationError(f"Tier {part!r} is not up_to:unit_price[:flat_fee].")
        try:
            up_to = None if fields[0].strip().lower() in ("inf", "") else Decimal(fields[0])
            tiers.append(
                TierSpec(
                    up_to=up_to,
                    unit_price=Decimal(fields[1]),
                    flat_fee=Decimal(fields[2]) if len(fields) == 3 else ZERO,
                )
            )
        except ArithmeticError:
            raise ValidationError(f"Tier {part!r} has a value that is not a number.") from None
    return tiers


def tiers_to_text(rule: PriceRule) -> str:
    parts = []
    for tier in rule.tiers.all():
        bound = "inf" if tier.up_to is None else engine.format_quantity(tier.up_to)
        part = f"{bound}:{engine.format_quantity(tier.unit_price)}"
        if tier.flat_fee:
            part += f":{engine.format_quantity(tier.flat_fee)}"
        parts.append(part)
    return "|".join(parts)
