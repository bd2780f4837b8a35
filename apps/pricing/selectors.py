"""Reads of the catalog: price sheets (cached), the rules in force, and quotes.

A *price sheet* is everything needed to price one product for one plan: every version of
the plan's own rules and of the catalog's, and what the plan includes. Sheets are cached
under a catalog *generation*; any change to the catalog starts a new generation
(``services.invalidate_pricing_cache``), and a short TTL bounds staleness should an
invalidation ever be missed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from apps.core.generations import Generation, GenerationMemo
from apps.pricing import cost_engine as engine
from apps.pricing.cost_engine import CostBreakdown, Terms, Tier
from apps.pricing.errors import InvalidUsage, PriceNotConfigured, ProductNotFound
from apps.pricing.models import IncludedQuota, Plan, PriceRule, Product

logger = logging.getLogger(__name__)

SHEET_TTL_SECONDS = 60
ZERO = Decimal(0)


@dataclass(frozen=True)
class RuleVersion:
    rule_id: int
    plan_id: int | None
    dimension: str
    effective_from: datetime
    effective_to: datetime | None
    terms: Terms

    def covers(self, instant: datetime) -> bool:
        return self.effective_from <= instant and (
            self.effective_to is None or instant < self.effective_to
        )


@dataclass(frozen=True)
class Inclusion:
    quantity: Decimal
    period: str
    scope: str  # "product:<code>" or "service_type:<code>"


@dataclass(frozen=True)
class PriceSheet:
    plan_id: int | None
    plan_currency: str
    product_id: int
    product_code: str
    service_type: str
    dimensions: tuple[str, ...]
    versions: tuple[RuleVersion, ...]
    inclusion: Inclusion | None

    def rule_at(self, dimension: str, instant: datetime) -> RuleVersion | None:
        """The plan's own version in force, else the catalog's — which is priced in the
        catalog currency, so it serves only plans in that currency."""
        for version in self._candidates(settings.CATALOG_CURRENCY).get(dimension, ()):
            if version.covers(instant):
                return version
        return None

    def _candidates(self, catalog_currency: str) -> dict[str, tuple[RuleVersion, ...]]:
        """Each dimension's versions in the order ``rule_at`` tries them (the plan's own,
        then the catalog's), worked out once per sheet (and catalog currency)."""
        held = self.__dict__.get("_candidates_for")
        if held is None or held[0] != catalog_currency:
            serves = self.plan_currency == catalog_currency
            by_dimension: dict[str, tuple[RuleVersion, ...]] = {}
            for dimension in dict.fromkeys(v.dimension for v in self.versions):
                versions = [v for v in self.versions if v.dimension == dimension]
                own = [v for v in versions if v.plan_id is not None]
                catalog = [v for v in versions if v.plan_id is None and serves]
                by_dimension[dimension] = (*own, *catalog)
            held = (catalog_currency, by_dimension)
            self.__dict__["_candidates_for"] = held  # (a frozen dataclass: its own memo)
        return held[1]


@dataclass(frozen=True)
class Quote:
    product_code: str
    service_type: str
    plan_id: int | None
    currency: str
    at: datetime
    quantities: Mapping[str, Decimal]
    breakdown: CostBreakdown
    rule_ids: Mapping[str, int]
    inclusion: Inclusion | None

    @property
    def total(self) -> Decimal:
        return self.breakdown.total

    @property
    def quantity(self) -> Decimal:
        return self.breakdown.quantity

    @property
    def is_included_in_subscription(self) -> bool:
        return self.quantity > 0 and self.breakdown.included_quantity == self.quantity

    @property
    def is_free_tier(self) -> bool:
        """Nothing to pay because the rule's free allowance covered the billable part."""
        return (
            self.breakdown.free_quantity > 0
            and self.total == 0
            and self.breakdown.billable_quantity == 0
        )

    @property
    def unit_price(self) -> Decimal:
        """Effective price per unit of the whole event (the line's own when there is one)."""
        if len(self.breakdown.lines) == 1:
            return self.breakdown.lines[0].unit_price
        if self.quantity == 0:
            return ZERO
        return engine.CONTEXT.divide(self.total, self.quantity).normalize(engine.CONTEXT)


# --- catalog lookups ---------------------------------------------------------------------


# Each process also keeps the sheets and products of the current catalog generation in
# memory and looks the generation up at most once a second: a catalog change reaches every
# process within a second, and the hot path pays no cache round trip for prices.
CATALOG = Generation("pricing")
_products = GenerationMemo(CATALOG)
_sheets = GenerationMemo(CATALOG)


def catalog_generation() -> str:
    return CATALOG.current()


def product_by_code(code: str, *, active_only: bool = True) -> Product:
    queryset = Product.objects.select_related("service_type")
    if active_only:
        queryset = queryset.filter(is_active=True)
    product = queryset.filter(code=code).first()
    if product is None:
        raise ProductNotFound(details={"product_id": code})
    return product


def active_products_by_code(codes) -> dict[str, Product]:
    """Active products by code, kept per process for the current catalog generation."""
    local = _products.entries()
    found = {code: local[code] for code in codes if code in local}
    missing = set(codes) - set(found)
    if missing:
        for product in Product.objects.filter(code__in=missing, is_active=True):
            local[product.code] = found[product.code] = product
    return found


_default_plan = GenerationMemo(CATALOG)


def default_plan() -> Plan | None:
    """The plan of organisations without one, kept per process for the catalog generation."""
    memo = _default_plan.entries()
    if "plan" not in memo:
        memo["plan"] = Plan.objects.filter(is_default=True, is_active=True).first()
    return memo["plan"]


def effective_plan(plan: Plan | None) -> Plan | None:
    """The organisation's plan, or the default plan for one without."""
    return plan if plan is not None else default_plan()


def _terms(rule: PriceRule) -> Terms:
    return Terms(
        model=rule.pricing_model,
        unit_price=rule.unit_price,
        tiers=tuple(Tier(t.up_to, t.unit_price, t.flat_fee) for t in rule.tiers.all()),
        package_size=rule.package_size,
        package_price=rule.package_price,
        free_allowance=rule.free_allowance,
        minimum_charge=rule.minimum_charge,
    )


def _load_sheet(*, plan: Plan | None, product: Product) -> PriceSheet:
    plan_filter = Q(plan__isnull=True) | (Q(plan=plan) if plan is not None else Q(pk__in=[]))
    rules = (
        PriceRule.objects.filter(plan_filter, product=product)
        .prefetch_related("tiers")
        .order_by("-effective_from")
    )
    versions = tuple(
        RuleVersion(
            rule_id=rule.pk,
            plan_id=rule.plan_id,
            dimension=rule.dimension,
            effective_from=rule.effective_from,
            effective_to=rule.effective_to,
            terms=_terms(rule),
        )
        for rule in rules
    )
    inclusion = None
    if plan is not None:
        quotas = IncludedQuota.objects.filter(
            Q(product=product) | Q(service_type_id=product.service_type_id), plan=plan
        ).order_by("product")  # a product's own inclusion before its service type's
        quota = min(quotas, key=lambda q: q.product_id is None, default=None)
        if quota is not None:
            scope = (
                f"product:{product.code}"
                if quota.product_id
                else f"service_type:{quota.service_type_id}"
            )
            inclusion = Inclusion(quantity=quota.quantity, period=quota.period, scope=scope)
    return PriceSheet(
        plan_id=plan.pk if plan else None,
        plan_currency=plan.currency if plan else settings.CATALOG_CURRENCY,
        product_id=product.pk,
        product_code=product.code,
        service_type=product.service_type_id,
        dimensions=tuple(product.dimensions),
        versions=versions,
        inclusion=inclusion,
    )


def service_type_inclusion(*, plan: Plan | None, service_type: str) -> Inclusion | None:
    """What ``plan`` includes of a whole service type per period (None: nothing)."""
    if plan is None:
        return None
    quota = IncludedQuota.objects.filter(plan=plan, service_type_id=service_type).first()
    if quota is None:
        return None
    return Inclusion(
        quantity=quota.quantity, period=quota.period, scope=f"service_type:{service_type}"
    )


def price_sheet(*, plan: Plan | None, product: Product) -> PriceSheet:
    local = _sheets.entries()
    key = f"pricing:{catalog_generation()}:sheet:{plan.pk if plan else 0}:{product.pk}"
    if key in local:
        return local[key]
    try:
        sheet = cache.get(key)
    except Exception:
        sheet = None
    if sheet is None:
        sheet = _load_sheet(plan=plan, product=product)
        try:
            cache.set(key, sheet, timeout=SHEET_TTL_SECONDS)
        except Exception:
            logger.warning("Pricing cache unavailable; sheet not cached")
    local[key] = sheet
    return sheet


# --- quotes ------------------------------------------------------------------------------


def resolve_quantities(
    *,
    product: Product,
    usage_amount: Decimal | None,
    dimensions: Mapping[str, Decimal] | None = None,
    usage_details: Mapping[str, object] | None = None,
) -> dict[str, Decimal]:
    """The quantity of each dimension an event carries.

    Explicit ``dimensions`` win; otherwise numeric keys of ``usage_details`` that name the
    product's dimensions (``input_tokens``, ``output_tokens``); otherwise the whole
    ``usage_amount`` goes to the product's first dimension. Raises ValueError for unknown
    dimensions, and when ``usage_amount`` contradicts the dimensions' sum.
    """
    if dimensions:
        unknown = sorted(set(dimensions) - set(product.dimensions))
        if unknown:
            raise ValueError(dict.fromkeys(unknown, "Not a dimension of this product."))
        quantities = {d: dimensions[d] for d in product.dimensions if d in dimensions}
    else:
        quantities = {}
        for name in product.dimensions:
            value = (usage_details or {}).get(name)
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                quantities[name] = Decimal(value)
        if not quantities:
            if usage_amount is None:
                raise ValueError({"usage_amount": "Give usage_amount or dimension quantities."})
            return {product.default_dimension: usage_amount}
    problems = {
        name: "Must be a finite quantity, not negative."
        for name, value in quantities.items()
        if not value.is_finite() or value < 0
    }
    if problems:
        raise ValueError(problems)
    if usage_amount is not None and sum(quantities.values(), ZERO) != usage_amount:
        raise ValueError(
            {"usage_amount": "Must equal the sum of the dimension quantities when both are given."}
        )
    return quantities


def quote(
    *,
    plan: Plan | None,
    product: Product,
    quantities: Mapping[str, Decimal],
    at: datetime,
    period_to_date: Mapping[str, Decimal] | None = None,
    included_used: Decimal = ZERO,
) -> Quote:
    """Prices one event of ``product`` under ``plan`` (or the default plan's catalog prices)
    at instant ``at``.

    ``period_to_date``: billable units of each dimension already used in the period;
    ``included_used``: how much of the plan's inclusion the period has consumed. Raises
    PriceNotConfigured when a dimension has no price in force at ``at`` in the plan's
    currency.
    """
    return quote_with_sheet(
        sheet=price_sheet(plan=plan, product=product),
        quantities=quantities,
        at=at,
        period_to_date=period_to_date,
        included_used=included_used,
    )


def quote_with_sheet(
    *,
    sheet: PriceSheet,
    quantities: Mapping[str, Decimal],
    at: datetime,
    period_to_date: Mapping[str, Decimal] | None = None,
    included_used: Decimal = ZERO,
) -> Quote:
    """``quote`` on a sheet already at hand (a batch prices many events on one sheet)."""
    terms_by_dimension: dict[str, Terms] = {}
    rule_ids: dict[str, int] = {}
    for dimension in quantities:
        version = sheet.rule_at(dimension, at)
        if version is None:
            raise PriceNotConfigured(
                f"No price for {sheet.product_code} ({dimension}) on this plan.",
                details={"product_id": sheet.product_code, "dimension": dimension},
            )
        terms_by_dimension[dimension] = version.terms
        rule_ids[dimension] = version.rule_id
    included_remaining = ZERO
    if sheet.inclusion is not None:
        included_remaining = max(ZERO, sheet.inclusion.quantity - included_used)
    breakdown = engine.price_dimensions(
        terms_by_dimension=terms_by_dimension,
        quantities=quantities,
        period_to_date=period_to_date,
        included=included_remaining,
    )
    return Quote(
        product_code=sheet.product_code,
        service_type=sheet.service_type,
        plan_id=sheet.plan_id,
        currency=sheet.plan_currency,
        at=at,
        quantities=dict(quantities),
        breakdown=breakdown,
        rule_ids=rule_ids,
        inclusion=sheet.inclusion,
    )


def quote_usage(
    *,
    plan: Plan | None,
    product_code: str,
    at: datetime,
    usage_amount: Decimal | None = None,
    dimensions: Mapping[str, Decimal] | None = None,
    usage_details: Mapping[str, object] | None = None,
    service_type: str | None = None,
    currency: str | None = None,
    period_to_date: Mapping[str, Decimal] | None = None,
    included_used: Decimal = ZERO,
) -> Quote:
    """A quote for usage described the way the API describes it.

    Raises ProductNotFound, InvalidUsage (service type or currency that do not match,
    unknown dimensions, contradicting amounts) and PriceNotConfigured.
    """
    product = product_by_code(product_code)
    problems: dict[str, object] = {}
    if service_type and service_type != product.service_type_id:
        problems["service_type"] = (
            f"{product.code} is a {product.service_type_id} product, not {service_type}."
        )
    plan_currency = plan.currency if plan is not None else settings.CATALOG_CURRENCY
    if currency and currency.upper() != plan_currency:
        problems["currency"] = f"Prices of this plan are in {plan_currency}."
    try:
        quantities = resolve_quantities(
            product=product,
            usage_amount=usage_amount,
            dimensions=dimensions,
            usage_details=usage_details,
        )
    except ValueError as error:
        problems.update(error.args[0])
    if problems:
        raise InvalidUsage(problems)
    return quote(
        plan=plan,
        product=product,
        quantities=quantities,
        at=at,
        period_to_date=period_to_date,
        included_used=included_used,
    )
