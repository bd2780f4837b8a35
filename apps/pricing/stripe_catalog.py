"""Plans and metered products mirrored to Stripe, idempotently.

Every Stripe object gets a deterministic identity, so a re-run (or a run cut short and
started again) finds what the last one made instead of making it twice:

- a plan is the Stripe product ``bp_plan_<code>`` with a recurring price for its base fee,
  found by the lookup key ``bp_plan_<code>_<currency>_<interval>_<amount in minor units>``
  (Stripe prices are immutable: a new base fee is a new price, the old one is left
  archived for the subscriptions still on it);
- a metered product is the Stripe product ``bp_product_<code>``, a billing meter with the
  event name ``bp_<code>`` (summing its events per customer), and on that meter a metered
  price per currency the plans use, worth one millionth of the currency unit per meter
  unit, found by the lookup key ``bp_usage_<code>_<currency>`` (``metered_lookup_key``).
  The portal prices usage itself (dimensions, tiers, allowances) and reports each postpaid
  amount in millionths, so Stripe's invoice line is the portal's amount, rounded by Stripe
  once per line (the meter values themselves are whole millionths, half up, per product
  and day).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import stripe
from django.conf import settings
from djstripe import models as djstripe

from apps.core.stripe_gateway import api_key
from apps.pricing.cost_engine import to_minor_units
from apps.pricing.currencies import minor_units
from apps.pricing.models import Plan, Product

METER_SCALE = 10**6  # meter units per currency unit


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def meter_unit_price(currency: str) -> str:
    """One millionth of the currency unit, in Stripe's minor units (``unit_amount_decimal``)."""
    digits = 6 - minor_units(currency)
    return f"{10**-digits:.{digits}f}" if digits > 0 else str(10**-digits)


def metered_lookup_key(product_code: str, currency: str) -> str:
    return f"bp_usage_{product_code}_{currency.lower()}"


def meter_event_name(product: Product) -> str:
    return "bp_" + re.sub(r"[^a-z0-9_]", "_", product.code.lower())[:90]


def steps() -> list[Plan | Product]:
    plans = list(Plan.objects.filter(is_active=True).order_by("sort_order", "code"))
    return plans + list(Product.objects.filter(is_active=True).order_by("code"))


def sync_one(item: Plan | Product, report: SyncReport) -> None:
    if isinstance(item, Plan):
        _sync_plan(item, report)
    else:
        _sync_product(item, report)


def _stripe_product(product_id: str, name: str, metadata: dict, report: SyncReport, what: str):
    key = api_key()
    try:
        product = stripe.Product.retrieve(product_id, api_key=key)
    except stripe.InvalidRequestError as error:
        if getattr(error, "code", "") != "resource_missing":
            raise
        product = stripe.Product.create(
            api_key=key, id=product_id, name=name, metadata=metadata,
            idempotency_key=f"portal-product-{product_id}",
        )  # fmt: skip
        report.created.append(f"{what}: Stripe product {product_id}")
    else:
        if product["name"] != name or not product.get("active", True):
            product = stripe.Product.modify(product_id, api_key=key, name=name, active=True)
            report.updated.append(f"{what}: Stripe product {product_id} renamed")
    djstripe.Product.sync_from_stripe_data(product, api_key=key)
    return product


def _price(lookup_key: str, create: dict, report: SyncReport, what: str):
    key = api_key()
    found = stripe.Price.list(api_key=key, lookup_keys=[lookup_key], limit=1)["data"]
    if found:
        price = found[0]
    else:
        price = stripe.Price.create(
            api_key=key, lookup_key=lookup_key, idempotency_key=f"portal-price-{lookup_key}",
            **create,
        )  # fmt: skip
        report.created.append(f"{what}: Stripe price {lookup_key}")
    djstripe.Price.sync_from_stripe_data(price, api_key=key)
    return price


def _sync_plan(plan: Plan, report: SyncReport) -> None:
    what = f"plan {plan.code}"
    product = _stripe_product(
        f"bp_plan_{plan.code}", f"{plan.name} plan", {"plan": plan.code}, report, what
    )
    currency = plan.currency
    amount = to_minor_units(plan.base_fee, currency)
    lookup_key = f"bp_plan_{plan.code}_{currency.lower()}_{plan.billing_interval}_{amount}"
    price = _price(
        lookup_key,
        {
            "product": product["id"],
            "currency": currency.lower(),
            "unit_amount": amount,
            "recurring": {"interval": plan.billing_interval},
            "metadata": {"plan": plan.code},
        },
        report,
        what,
    )
    _link(plan, {"stripe_product_id": product["id"], "stripe_price_id": price["id"]}, report, what)


def _sync_product(product: Product, report: SyncReport) -> None:
    key = api_key()
    what = f"product {product.code}"
    stripe_product = _stripe_product(
        f"bp_product_{product.code}", product.name, {"product": product.code}, report, what
    )
    event_name = meter_event_name(product)
    meters = stripe.billing.Meter.list(api_key=key, limit=100)
    meter = next((m for m in meters.auto_paging_iter() if m["event_name"] == event_name), None)
    if meter is None:
        meter = stripe.billing.Meter.create(
            api_key=key,
            display_name=f"{product.name} (postpaid, millionths of the currency unit)",
            event_name=event_name,
            default_aggregation={"formula": "sum"},
            customer_mapping={"type": "by_id", "event_payload_key": "stripe_customer_id"},
            value_settings={"event_payload_key": "value"},
            idempotency_key=f"portal-meter-{event_name}",
        )
        report.created.append(f"{what}: Stripe meter {event_name}")
    # A subscription's prices share one currency: a metered price for each plan currency.
    plan_currencies = set(Plan.objects.filter(is_active=True).values_list("currency", flat=True))
    prices = {
        currency: _price(
            metered_lookup_key(product.code, currency),
            {
                "product": stripe_product["id"],
                "currency": currency.lower(),
                "unit_amount_decimal": meter_unit_price(currency),
                "recurring": {"interval": "month", "usage_type": "metered", "meter": meter["id"]},
                "metadata": {"product": product.code},
            },
            report,
            what,
        )
        for currency in sorted(plan_currencies | {settings.CATALOG_CURRENCY})
    }
    price = prices[settings.CATALOG_CURRENCY]
    _link(
        product,
        {
            "stripe_product_id": stripe_product["id"],
            "stripe_meter_id": meter["id"],
            "stripe_meter_event_name": event_name,
            "stripe_price_id": price["id"],
        },
        report,
        what,
    )


def _link(instance, values: dict, report: SyncReport, what: str) -> None:
    changed = [name for name, value in values.items() if getattr(instance, name) != value]
    if changed:
        for name in changed:
            setattr(instance, name, values[name])
        instance.save(update_fields=changed)
        report.updated.append(f"{what}: linked ({', '.join(changed)})")
    elif not any(entry.startswith(what) for entry in report.created + report.updated):
        report.unchanged.append(what)
