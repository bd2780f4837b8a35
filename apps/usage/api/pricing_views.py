"""The pricing API: calculate (seed 003), the price sheet, and estimates. Above the
catalog (``apps.pricing``), since calculate and estimate price where the organisation
stands in its periods, as recording the same usage would."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import (
    ORGANIZATION_ERRORS,
    READ_ORGANIZATION_ERRORS,
    organization_for_request,
)
from apps.customers.api.views import ORGANIZATION_ID_PARAMETER
from apps.customers.models import ApiKey
from apps.customers.wallets import billing_methods_for
from apps.pricing import selectors
from apps.pricing.api.fields import (
    CurrencyField,
    DimensionQuantitiesField,
    InstantField,
    QuantityField,
)
from apps.pricing.api.presenters import (
    BreakdownSerializer,
    ProductPriceSerializer,
    present_breakdown,
    present_product,
)
from apps.pricing.cost_engine import format_amount, format_quantity
from apps.pricing.errors import PriceNotConfigured, ProductNotFound
from apps.pricing.models import Product
from apps.usage.selectors import period_position


def quote_at_position(*, organization, **described) -> selectors.Quote:
    """The quote of ``described`` usage priced where the organisation stands in its periods
    (inclusions used, tiers reached), as recording the same usage now would price it:
    calculate and estimate answer what record charges."""
    quote = selectors.quote_usage(**described)
    period_to_date, included_used = period_position(
        organization=organization,
        sheet=selectors.price_sheet(
            plan=described["plan"], product=selectors.product_by_code(described["product_code"])
        ),
        quantities=quote.quantities,
        at=described["at"],
    )
    if period_to_date or included_used:
        quote = selectors.quote_usage(
            **described, period_to_date=period_to_date, included_used=included_used
        )
    return quote


class CalculateApi(APIView):
    """What usage would cost, without recording it (seed 003's billing/calculate)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = (*ORGANIZATION_ERRORS, ProductNotFound, PriceNotConfigured)

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False, max_length=64)
        user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
        product_id = serializers.CharField(max_length=100)
        service_type = serializers.CharField(required=False, max_length=64)
        usage_amount = QuantityField(required=False)
        dimensions = DimensionQuantitiesField(required=False)
        usage_details = serializers.DictField(required=False)
        pricing_context = serializers.DictField(required=False)
        currency = CurrencyField(required=False)
        at = InstantField(required=False, help_text="Price at this instant.")

    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        product_id = serializers.CharField()
        usage_amount = serializers.CharField()
        unit_price = serializers.CharField()
        total_cost = serializers.CharField()
        currency = serializers.CharField()
        is_free_tier = serializers.BooleanField()
        is_included_in_subscription = serializers.BooleanField()
        suggested_billing_method = serializers.CharField(
            allow_null=True, help_text="What recording this usage now would use (null: none "
            "could pay it, e.g. charges blocked past due and no credits or wallet)."
        )  # fmt: skip
        available_billing_methods = serializers.ListField(
            child=serializers.CharField(), help_text="The methods that could pay it now, in "
            "the order recording tries them: included, credits, wallet, payment charge."
        )  # fmt: skip
        breakdown = BreakdownSerializer()

    @extend_schema(
        operation_id="billing_calculate", request=InputSerializer, responses=OutputSerializer
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organization = organization_for_request(request)
        plan = selectors.effective_plan(organization.plan)
        at = data.get("at") or timezone.now()
        described = {
            "plan": plan,
            "product_code": data["product_id"],
            "at": at,
            "usage_amount": data.get("usage_amount"),
            "dimensions": data.get("dimensions"),
            "usage_details": data.get("usage_details"),
            "service_type": data.get("service_type"),
            "currency": data.get("currency"),
        }
        quote = quote_at_position(organization=organization, **described)
        methods = billing_methods_for(organization, quote.total, at)
        return Response(
            {
                "success": True,
                "product_id": quote.product_code,
                "usage_amount": format_quantity(quote.quantity),
                "unit_price": format_quantity(quote.unit_price),
                "total_cost": format_amount(quote.total, quote.currency),
                "currency": quote.currency,
                "is_free_tier": quote.is_free_tier,
                "is_included_in_subscription": quote.is_included_in_subscription,
                "suggested_billing_method": methods[0] if methods else None,
                "available_billing_methods": methods,
                "breakdown": present_breakdown(quote),
            }
        )


class EstimateApi(APIView):
    """What a planned call would cost, from its input and output token counts (or any
    dimension quantities)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = (*ORGANIZATION_ERRORS, ProductNotFound, PriceNotConfigured)

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False, max_length=64)
        product_id = serializers.CharField(max_length=100)
        input_tokens = QuantityField(required=False)
        output_tokens = QuantityField(required=False)
        dimensions = DimensionQuantitiesField(required=False)

        def validate(self, attrs):
            dimensions = dict(attrs.get("dimensions") or {})
            for name in ("input_tokens", "output_tokens"):
                if name in attrs:
                    dimensions[name] = attrs[name]
            if not dimensions:
                raise serializers.ValidationError(
                    "Give input_tokens and/or output_tokens, or dimensions."
                )
            attrs["dimensions"] = dimensions
            return attrs

    class OutputSerializer(serializers.Serializer):
        product_id = serializers.CharField()
        currency = serializers.CharField()
        total_cost = serializers.CharField()
        breakdown = BreakdownSerializer()

    @extend_schema(
        operation_id="pricing_estimate", request=InputSerializer, responses=OutputSerializer
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organization = organization_for_request(request)
        quote = quote_at_position(
            organization=organization,
            plan=selectors.effective_plan(organization.plan),
            product_code=data["product_id"],
            at=timezone.now(),
            dimensions=data["dimensions"],
        )
        return Response(
            {
                "product_id": quote.product_code,
                "currency": quote.currency,
                "total_cost": format_amount(quote.total, quote.currency),
                "breakdown": present_breakdown(quote),
            }
        )


class ProductListApi(APIView):
    """The price sheet the caller's plan gives it: every active product and its prices."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = READ_ORGANIZATION_ERRORS

    class OutputSerializer(serializers.Serializer):
        plan = serializers.CharField(allow_null=True)
        currency = serializers.CharField()
        products = ProductPriceSerializer(many=True)

    @extend_schema(
        operation_id="pricing_products_list",
        parameters=[ORGANIZATION_ID_PARAMETER],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        plan = selectors.effective_plan(organization.plan)
        now = timezone.now()
        products = Product.objects.filter(is_active=True).select_related("service_type")
        return Response(
            {
                "plan": plan.code if plan else None,
                "currency": plan.currency if plan else settings.CATALOG_CURRENCY,
                "products": [present_product(plan=plan, product=p, at=now) for p in products],
            }
        )


class ProductDetailApi(APIView):
    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = (*READ_ORGANIZATION_ERRORS, ProductNotFound)

    @extend_schema(
        operation_id="pricing_products_retrieve",
        parameters=[ORGANIZATION_ID_PARAMETER],
        responses=ProductPriceSerializer,
    )
    def get(self, request: Request, code: str) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        plan = selectors.effective_plan(organization.plan)
        product = selectors.product_by_code(code)
        return Response(present_product(plan=plan, product=product, at=timezone.now()))
