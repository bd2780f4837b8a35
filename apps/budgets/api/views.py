"""The budgets API: CRUD with each budget's current period, checks, violations, quotas."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.budgets import selectors, services
from apps.budgets.models import Budget
from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import (
    ORGANIZATION_ERRORS,
    READ_ORGANIZATION_ERRORS,
    organization_for_request,
)
from apps.customers.api.views import ORGANIZATION_ID_PARAMETER
from apps.customers.models import ApiKey
from apps.pricing import selectors as pricing
from apps.pricing.api.fields import DimensionQuantitiesField, QuantityField
from apps.pricing.cost_engine import format_amount
from apps.pricing.errors import PriceNotConfigured, ProductNotFound
from apps.pricing.models import Product, ServiceType


def present_status(status: selectors.BudgetStatus) -> dict:
    currency = status.budget.currency
    return {
        "period_start": status.period_start,
        "period_end": status.period_end,
        "spent": format_amount(status.spent, currency),
        "remaining": format_amount(status.remaining, currency),
        "utilization_percent": str(status.utilization),
        "crossed_thresholds": status.crossed_thresholds,
        # Of spent: what the period had spent before the budget counted it (a budget
        # created part-way through its period counts the period's usage from its start).
        "spent_before_budget": format_amount(status.spent_before_budget, currency),
    }


def present_standing(status: selectors.BudgetStatus) -> dict:
    """A budget with where its current period stands."""
    budget = status.budget
    return {
        "budget_id": budget.pk,
        "name": budget.name,
        "hard": budget.is_hard,
        "limit": format_amount(budget.limit, budget.currency),
        **present_status(status),
    }


class PeriodStatusSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField(allow_null=True)
    spent = serializers.CharField()
    remaining = serializers.CharField()
    utilization_percent = serializers.CharField()
    crossed_thresholds = serializers.ListField(child=serializers.IntegerField())
    spent_before_budget = serializers.CharField(
        help_text="Of spent, what the period had spent before the budget began counting it "
        "(created, or its scope changed, part-way through the period)."
    )


class BudgetStandingSerializer(PeriodStatusSerializer):
    budget_id = serializers.IntegerField()
    name = serializers.CharField()
    hard = serializers.BooleanField()
    limit = serializers.CharField()


class BudgetListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        # Every budget's current period in one query, not one per row.
        budgets = list(data.all() if hasattr(data, "all") else data)
        statuses = selectors.budget_statuses(budgets, at=timezone.now())
        self.child.context["statuses"] = {status.budget.pk: status for status in statuses}
        return super().to_representation(budgets)


class BudgetSerializer(serializers.ModelSerializer):
    service_type = serializers.SlugRelatedField(
        slug_field="code", queryset=ServiceType.objects.all(), required=False, allow_null=True
    )
    product_id = serializers.SlugRelatedField(
        source="product", slug_field="code", queryset=Product.objects.all(), required=False,
        allow_null=True,
    )  # fmt: skip
    api_key = serializers.SlugRelatedField(
        slug_field="prefix", queryset=ApiKey.objects.all(), required=False, allow_null=True
    )
    limit = serializers.DecimalField(max_digits=28, decimal_places=12, min_value=Decimal(0))
    currency = serializers.CharField(required=False)
    current_period = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id", "name", "scope", "service_type", "product_id", "api_key", "period", "limit",
            "currency", "is_hard", "thresholds", "is_active", "created_at", "current_period",
        ]  # fmt: skip
        read_only_fields = ["id", "created_at", "current_period"]
        list_serializer_class = BudgetListSerializer

    @extend_schema_field(PeriodStatusSerializer)
    def get_current_period(self, budget: Budget) -> dict:
        status = self.context.get("statuses", {}).get(budget.pk)
        if status is None:
            (status,) = selectors.budget_statuses([budget], at=timezone.now())
        return present_status(status)

    def validate(self, attrs):
        organization = self.context["organization"]
        instance = self.instance or Budget(organization=organization)
        attrs.setdefault("currency", organization.currency)
        for name, value in attrs.items():
            setattr(instance, name, value)
        instance.organization = organization
        try:
            instance.full_clean(exclude=["organization"])
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        return attrs


@extend_schema(parameters=[ORGANIZATION_ID_PARAMETER])
class BudgetViewSet(viewsets.ModelViewSet):
    """Budgets of the caller's organisation, each with its current period."""

    serializer_class = BudgetSerializer
    permission_classes = [HasApiKeyScope]
    error_types = (*ORGANIZATION_ERRORS, services.BudgetBusy)

    @property
    def required_scope(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return ApiKey.Scope.BILLING_READ
        return ApiKey.Scope.BUDGETS_WRITE

    def get_organization(self):
        if not hasattr(self, "_organization"):
            # A suspended organisation reads its budgets but changes none, like its usage.
            reading = self.request.method in ("GET", "HEAD", "OPTIONS")
            self._organization = organization_for_request(self.request, allow_suspended=reading)
        return self._organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Budget.objects.none()
        return selectors.budgets_of(self.get_organization()).order_by("name", "id")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):
            return context
        return {**context, "organization": self.get_organization()}

    def perform_create(self, serializer):
        budget = Budget(organization=self.get_organization(), **serializer.validated_data)
        serializer.instance = services.save_budget(budget)

    def perform_update(self, serializer):
        budget = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(budget, name, value)
        services.save_budget(budget)


class UsageQuantitySerializer(serializers.Serializer):
    organization_id = serializers.CharField(required=False)
    product_id = serializers.CharField(max_length=100)
    usage_amount = QuantityField(required=False)
    dimensions = DimensionQuantitiesField(required=False)
    usage_details = serializers.DictField(required=False)


class BudgetCheckApi(APIView):
    """Would this usage fit every budget that covers it? Reserves nothing."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = (*ORGANIZATION_ERRORS, ProductNotFound, PriceNotConfigured)

    class OutputSerializer(serializers.Serializer):
        class CheckSerializer(BudgetStandingSerializer):
            fits = serializers.BooleanField()

        allowed = serializers.BooleanField()
        estimated_cost = serializers.CharField()
        currency = serializers.CharField()
        budgets = CheckSerializer(many=True)

    @extend_schema(
        operation_id="budgets_check", request=UsageQuantitySerializer, responses=OutputSerializer
    )
    def post(self, request: Request) -> Response:
        params = UsageQuantitySerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        organization = organization_for_request(request)
        now = timezone.now()
        quote = pricing.quote_usage(
            plan=pricing.effective_plan(organization.plan),
            product_code=data["product_id"],
            at=now,
            usage_amount=data.get("usage_amount"),
            dimensions=data.get("dimensions"),
            usage_details=data.get("usage_details"),
        )
        product = pricing.active_products_by_code({quote.product_code})[quote.product_code]
        api_key_id = None if request.auth.is_service else request.auth.pk
        budgets = [
            budget
            for budget in selectors.budgets_of(organization).filter(is_active=True)
            if budget.covers(
                service_type=product.service_type_id, product_id=product.pk, api_key_id=api_key_id
            )  # fmt: skip
        ]
        results = []
        for status in selectors.budget_statuses(budgets, at=now):
            fits = status.spent + quote.total <= status.budget.limit
            results.append({**present_standing(status), "fits": fits})
        # Past due beyond the grace period, budgets fail closed.
        allowed = not organization.charges_blocked(now) and all(
            r["fits"] or not r["hard"] for r in results
        )
        return Response(
            {
                "allowed": allowed,
                "estimated_cost": format_amount(quote.total, quote.currency),
                "currency": quote.currency,
                "budgets": results,
            }
        )


class ViolationsApi(APIView):
    """Budgets at or over their limit (violations) and past a warning threshold."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = READ_ORGANIZATION_ERRORS

    class OutputSerializer(serializers.Serializer):
        violations = BudgetStandingSerializer(many=True)
        warnings = BudgetStandingSerializer(many=True)

    @extend_schema(
        operation_id="budgets_violations",
        parameters=[ORGANIZATION_ID_PARAMETER],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        violations, warnings = selectors.violations_and_warnings(organization, at=timezone.now())
        return Response(
            {
                "violations": [present_standing(s) for s in violations],
                "warnings": [present_standing(s) for s in warnings],
            }
        )
