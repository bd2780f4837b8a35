"""How billing records read in JSON (decimal amounts as strings)."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from apps.pricing.cost_engine import format_amount, format_quantity
from apps.usage.models import BillingRecord


class BillingRecordSerializer(serializers.Serializer):
    """Seed 003's billing record, plus what it was charged per dimension."""

    billing_id = serializers.CharField()
    event_id = serializers.CharField()
    organization_id = serializers.CharField()
    user_id = serializers.CharField()
    product_id = serializers.CharField()
    service_type = serializers.CharField()
    usage_amount = serializers.CharField()
    included_quantity = serializers.CharField()
    unit_price = serializers.CharField()
    total_amount = serializers.CharField()
    currency = serializers.CharField()
    billing_method = serializers.CharField()
    billing_status = serializers.CharField()
    breakdown = serializers.ListField(child=serializers.DictField())
    occurred_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def present_record(record: BillingRecord, *, organization_slug: str) -> dict:
    return {
        "billing_id": record.billing_id,
        "event_id": record.event.idempotency_key,
        "organization_id": organization_slug,
        "user_id": record.user_id,
        "product_id": record.product.code,
        "service_type": record.service_type,
        "usage_amount": format_quantity(record.usage_amount),
        "included_quantity": format_quantity(record.included_quantity),
        "unit_price": format_quantity(record.unit_price),
        "total_amount": format_amount(record.total_amount, record.currency),
        "currency": record.currency,
        "billing_method": record.billing_method,
        "billing_status": record.status,
        "breakdown": record.breakdown,
        "occurred_at": record.occurred_at.isoformat(),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def present_balances(*, wallet: Decimal, credits: Decimal, currency: str) -> dict:
    return {
        "wallet_balance": format_amount(wallet, currency),
        "credit_balance": format_amount(credits, currency),
    }
