"""How quotes and price sheets read in JSON: decimal amounts as strings, never floats."""

from __future__ import annotations

from datetime import datetime

from rest_framework import serializers

from apps.pricing import selectors
from apps.pricing.cost_engine import format_amount, format_quantity
from apps.pricing.models import Plan, Product


class BreakdownLineSerializer(serializers.Serializer):
    dimension = serializers.CharField()
    quantity = serializers.CharField()
    included_quantity = serializers.CharField()
    free_quantity = serializers.CharField()
    billable_quantity = serializers.CharField()
    unit_price = serializers.CharField()
    amount = serializers.CharField()
    pricing_model = serializers.CharField()
    price_rule_id = serializers.IntegerField()


class InclusionSerializer(serializers.Serializer):
    quantity = serializers.CharField()
    period = serializers.CharField()
    scope = serializers.CharField()


class BreakdownSerializer(serializers.Serializer):
    plan = serializers.CharField(allow_null=True)
    priced_at = serializers.DateTimeField()
    included = InclusionSerializer(allow_null=True)
    dimensions = BreakdownLineSerializer(many=True)


def _plan_code(plan_id: int | None) -> str | None:
    if plan_id is None:
        return None
    return Plan.objects.filter(pk=plan_id).values_list("code", flat=True).first()


def present_inclusion(inclusion: selectors.Inclusion | None) -> dict | None:
    if inclusion is None:
        return None
    return {
        "quantity": format_quantity(inclusion.quantity),
        "period": inclusion.period,
        "scope": inclusion.scope,
    }


def present_breakdown(quote: selectors.Quote) -> dict:
    return {
        "plan": _plan_code(quote.plan_id),
        "priced_at": quote.at.isoformat(),
        "included": present_inclusion(quote.inclusion),
        "dimensions": [
            {
                "dimension": line.dimension,
                "quantity": format_quantity(line.quantity),
                "included_quantity": format_quantity(line.included_quantity),
                "free_quantity": format_quantity(line.free_quantity),
                "billable_quantity": format_quantity(line.billable_quantity),
                "unit_price": format_quantity(line.unit_price),
                "amount": format_amount(line.amount, quote.currency),
                "pricing_model": line.pricing_model,
                "price_rule_id": quote.rule_ids[line.dimension],
            }
            for line in quote.breakdown.lines
        ],
    }


class TierSerializer(serializers.Serializer):
    up_to = serializers.CharField(allow_null=True)
    unit_price = serializers.CharField()
    flat_fee = serializers.CharField()


class DimensionPriceSerializer(serializers.Serializer):
    dimension = serializers.CharField()
    configured = serializers.BooleanField()
    source = serializers.CharField(allow_null=True, help_text="plan or catalog")
    pricing_model = serializers.CharField(allow_null=True)
    unit_price = serializers.CharField(allow_null=True)
    tiers = TierSerializer(many=True)
    package_size = serializers.CharField(allow_null=True)
    package_price = serializers.CharField(allow_null=True)
    free_allowance = serializers.CharField(allow_null=True)
    minimum_charge = serializers.CharField(allow_null=True)
    effective_from = serializers.DateTimeField(allow_null=True)
    effective_to = serializers.DateTimeField(allow_null=True)


class ProductPriceSerializer(serializers.Serializer):
    product_id = serializers.CharField()
    name = serializers.CharField()
    service_type = serializers.CharField()
    unit = serializers.CharField()
    provider = serializers.CharField()
    model_name = serializers.CharField()
    currency = serializers.CharField()
    included = InclusionSerializer(allow_null=True)
    prices = DimensionPriceSerializer(many=True)


def _present_version(dimension: str, version: selectors.RuleVersion | None) -> dict:
    if version is None:
        return {
            "dimension": dimension,
            "configured": False,
            "source": None,
            "pricing_model": None,
            "unit_price": None,
            "tiers": [],
            "package_size": None,
            "package_price": None,
            "free_allowance": None,
            "minimum_charge": None,
            "effective_from": None,
            "effective_to": None,
        }
    terms = version.terms
    return {
        "dimension": dimension,
        "configured": True,
        "source": "catalog" if version.plan_id is None else "plan",
        "pricing_model": terms.model,
        "unit_price": format_quantity(terms.unit_price),
        "tiers": [
            {
                "up_to": None if tier.up_to is None else format_quantity(tier.up_to),
                "unit_price": format_quantity(tier.unit_price),
                "flat_fee": format_quantity(tier.flat_fee),
            }
            for tier in terms.tiers
        ],
        "package_size": None if terms.package_size is None else format_quantity(terms.package_size),
        "package_price": format_quantity(terms.package_price),
        "free_allowance": format_quantity(terms.free_allowance),
        "minimum_charge": format_quantity(terms.minimum_charge),
        "effective_from": version.effective_from.isoformat(),
        "effective_to": version.effective_to.isoformat() if version.effective_to else None,
    }


def present_product(*, plan: Plan | None, product: Product, at: datetime) -> dict:
    sheet = selectors.price_sheet(plan=plan, product=product)
    return {
        "product_id": product.code,
        "name": product.name,
        "service_type": product.service_type_id,
        "unit": product.unit,
        "provider": product.provider,
        "model_name": product.model_name,
        "currency": sheet.plan_currency,
        "included": present_inclusion(sheet.inclusion),
        "prices": [
            _present_version(dimension, sheet.rule_at(dimension, at))
            for dimension in sheet.dimensions
        ],
    }
