"""The billing API: records, processing and refunds, stats and usage aggregations."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers import wallets
from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import (
    OPTIONAL_ORGANIZATION_ERRORS,
    ORGANIZATION_ERRORS,
    READ_ORGANIZATION_ERRORS,
    optional_organization,
    organization_for_request,
)
from apps.customers.api.views import ORGANIZATION_ID_PARAMETER
from apps.customers.models import ApiKey
from apps.pricing import selectors as pricing
from apps.pricing.api.fields import CalendarDateField, QuantityField
from apps.pricing.cost_engine import format_amount, format_quantity
from apps.pricing.errors import ProductNotFound
from apps.pricing.models import BillingMethod
from apps.usage import selectors, services
from apps.usage.api.presenters import BillingRecordSerializer, present_balances, present_record
from apps.usage.api.views import actor_of
from apps.usage.errors import (
    BillingRecordNotFound,
    InsufficientCredits,
    InsufficientWalletBalance,
    InvalidStatusTransition,
    NotIncludedInSubscription,
)
from apps.usage.models import BillingStatus


def _present(record) -> dict:
    return present_record(record, organization_slug=record.organization.slug)


# The latest local date on earth (UTC+14): platform-wide, each organisation's days are its
# own, and the range that ends today must hold the day of each of them.
LATEST_OFFSET = timedelta(hours=14)


def today_of(organization) -> date:
    """Today for a read of ``organization``'s days (its rollup's, in its time zone), or
    platform-wide (None) the latest date any time zone has reached."""
    now = timezone.now()
    if organization is not None:
        return now.astimezone(organization.tz).date()
    return (now.astimezone(UTC) + LATEST_OFFSET).date()


class RangeSerializer(serializers.Serializer):
    organization_id = serializers.CharField(required=False)
    start_date = CalendarDateField(required=False)
    end_date = CalendarDateField(required=False)
    service_type = serializers.CharField(required=False)
    product_id = serializers.CharField(required=False)

    def validate(self, attrs):
        today = today_of(self.context.get("organization"))
        attrs.setdefault("end_date", today)
        attrs.setdefault("start_date", attrs["end_date"] - timedelta(days=29))
        if attrs["start_date"] > attrs["end_date"]:
            raise serializers.ValidationError({"start_date": "Must not be after end_date."})
        if (attrs["end_date"] - attrs["start_date"]).days > 366:
            raise serializers.ValidationError({"start_date": "At most 366 days at once."})
        return attrs


def _range_filters(data: dict) -> dict:
    return {
        "start": data["start_date"],
        "end": data["end_date"],
        "service_type": data.get("service_type"),
        "product_code": data.get("product_id"),
    }


class UserRecordsApi(APIView):
    """Billing records of one end user (seed 003), newest first."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = OPTIONAL_ORGANIZATION_ERRORS

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False)
        status = serializers.ChoiceField(choices=BillingStatus.choices, required=False)
        limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
        offset = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)

    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        limit = serializers.IntegerField()
        offset = serializers.IntegerField()
        has_more = serializers.BooleanField()
        records = BillingRecordSerializer(many=True)

    @extend_schema(
        operation_id="billing_records_user",
        parameters=[InputSerializer],
        responses=OutputSerializer,
    )
    def get(self, request: Request, user_id: str) -> Response:
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        records = selectors.billing_records(
            organization=optional_organization(request),
            user_id=user_id,
            status=data.get("status"),
        )
        page = list(records[data["offset"] : data["offset"] + data["limit"] + 1])
        return Response(
            {
                "user_id": user_id,
                "limit": data["limit"],
                "offset": data["offset"],
                "has_more": len(page) > data["limit"],
                "records": [_present(record) for record in page[: data["limit"]]],
            }
        )


class RecordCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class RecordListApi(APIView):
    """Billing records, filtered, newest first, with cursor pagination (``next``)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = OPTIONAL_ORGANIZATION_ERRORS

    class InputSerializer(RangeSerializer):
        status = serializers.ChoiceField(choices=BillingStatus.choices, required=False)
        user_id = serializers.CharField(required=False)
        cursor = serializers.CharField(required=False)
        limit = serializers.IntegerField(min_value=1, max_value=200, required=False)

    class OutputSerializer(serializers.Serializer):
        next = serializers.CharField(allow_null=True)
        previous = serializers.CharField(allow_null=True)
        results = BillingRecordSerializer(many=True)

    @extend_schema(
        operation_id="billing_records_list",
        parameters=[InputSerializer],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        organization = optional_organization(request)
        params = self.InputSerializer(
            data=request.query_params, context={"organization": organization}
        )
        params.is_valid(raise_exception=True)
        data = params.validated_data
        records = selectors.billing_records(
            organization=organization,
            user_id=data.get("user_id"),
            status=data.get("status"),
            **_range_filters(data),
        )
        paginator = RecordCursor()
        page = paginator.paginate_queryset(records, request, view=self)
        return paginator.get_paginated_response([_present(record) for record in page])


class ProcessBillingApi(APIView):
    """Settles a pending record with a billing method (seed 003's billing/process)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_WRITE
    error_types = (
        *OPTIONAL_ORGANIZATION_ERRORS,
        BillingRecordNotFound,
        InvalidStatusTransition,
        InsufficientWalletBalance,
        InsufficientCredits,
        NotIncludedInSubscription,
    )

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False)
        billing_id = serializers.CharField(max_length=40)
        billing_method = serializers.ChoiceField(choices=BillingMethod.choices)
        force_charge = serializers.BooleanField(default=False)

    @extend_schema(
        operation_id="billing_process", request=InputSerializer, responses=BillingRecordSerializer
    )
    def post(self, request: Request) -> Response:
        params = self.InputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        record = services.process_billing(
            organization=optional_organization(request),
            billing_id=data["billing_id"],
            billing_method=data["billing_method"],
            force_charge=data["force_charge"],
            actor=actor_of(request.auth),
        )
        return Response(_present(record))


class RefundBillingApi(APIView):
    """Refunds a record in full; refunding twice changes nothing."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_WRITE
    error_types = (*OPTIONAL_ORGANIZATION_ERRORS, BillingRecordNotFound, InvalidStatusTransition)

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False)
        billing_id = serializers.CharField(max_length=40)
        reason = serializers.CharField(max_length=500)

    @extend_schema(
        operation_id="billing_refund", request=InputSerializer, responses=BillingRecordSerializer
    )
    def post(self, request: Request) -> Response:
        params = self.InputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        record = services.refund_billing(
            organization=optional_organization(request),
            billing_id=data["billing_id"],
            actor=actor_of(request.auth),
            reason=data["reason"],
        )
        return Response(_present(record))


class StatsApi(APIView):
    """Seed 003's billing statistics for a date range (default: the last 30 days)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = OPTIONAL_ORGANIZATION_ERRORS

    class OutputSerializer(serializers.Serializer):
        total_billing_records = serializers.IntegerField()
        pending_billing_records = serializers.IntegerField()
        completed_billing_records = serializers.IntegerField()
        failed_billing_records = serializers.IntegerField()
        total_revenue = serializers.CharField()
        revenue_by_service = serializers.DictField(child=serializers.CharField())
        revenue_by_method = serializers.DictField(child=serializers.CharField())
        active_users = serializers.IntegerField()
        active_organizations = serializers.IntegerField()
        stats_period_start = serializers.DateField()
        stats_period_end = serializers.DateField()

    @extend_schema(
        operation_id="stats_retrieve", parameters=[RangeSerializer], responses=OutputSerializer
    )
    def get(self, request: Request) -> Response:
        organization = optional_organization(request)
        params = RangeSerializer(data=request.query_params, context={"organization": organization})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        stats = selectors.billing_stats(
            organization=organization,
            start=data["start_date"],
            end=data["end_date"],
        )
        money = format_quantity
        return Response(
            {
                **stats,
                "total_revenue": money(stats["total_revenue"]),
                "revenue_by_service": {k: money(v) for k, v in stats["revenue_by_service"].items()},
                "revenue_by_method": {k: money(v) for k, v in stats["revenue_by_method"].items()},
                "stats_period_start": data["start_date"],
                "stats_period_end": data["end_date"],
            }
        )


def present_totals(row: dict) -> dict:
    return {
        **row,
        "quantity": format_quantity(row["quantity"]),
        "cost": format_quantity(row["cost"]),
    }


class TotalsSerializer(serializers.Serializer):
    quantity = serializers.CharField()
    cost = serializers.CharField()
    events = serializers.IntegerField()


class AggregationsApi(APIView):
    """Usage totals grouped by service type, product, user, day or billing method."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = OPTIONAL_ORGANIZATION_ERRORS

    class InputSerializer(RangeSerializer):
        user_id = serializers.CharField(required=False)
        group_by = serializers.CharField(
            required=False,
            default="service_type",
            help_text="Comma-separated: " + ", ".join(selectors.GROUPS),
        )

        def validate_group_by(self, value):
            names = [name.strip() for name in value.split(",") if name.strip()]
            unknown = [name for name in names if name not in selectors.GROUPS]
            if unknown or not names:
                raise serializers.ValidationError(f"Group by: {', '.join(selectors.GROUPS)}.")
            return names

    class OutputSerializer(serializers.Serializer):
        class GroupSerializer(TotalsSerializer):
            service_type = serializers.CharField(required=False)
            product = serializers.CharField(required=False)
            user = serializers.CharField(required=False)
            day = serializers.DateField(required=False)
            billing_method = serializers.CharField(required=False)

        organization_id = serializers.CharField(allow_null=True)
        start_date = serializers.DateField()
        end_date = serializers.DateField()
        group_by = serializers.ListField(child=serializers.CharField())
        results = GroupSerializer(many=True)

    @extend_schema(
        operation_id="usage_aggregations", parameters=[InputSerializer], responses=OutputSerializer
    )
    def get(self, request: Request) -> Response:
        organization = optional_organization(request)
        params = self.InputSerializer(
            data=request.query_params, context={"organization": organization}
        )
        params.is_valid(raise_exception=True)
        data = params.validated_data
        rows = selectors.usage_aggregations(
            group_by=data["group_by"],
            organization=organization,
            user_id=data.get("user_id"),
            **_range_filters(data),
        )
        return Response(
            {
                "organization_id": organization.slug if organization else None,
                "start_date": data["start_date"],
                "end_date": data["end_date"],
                "group_by": data["group_by"],
                "results": [present_totals(row) for row in rows],
            }
        )


class TrendsApi(APIView):
    """Daily usage over the last N days (seed 002's usage trends)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = OPTIONAL_ORGANIZATION_ERRORS

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False)
        days = serializers.IntegerField(min_value=1, max_value=366, default=30)
        service_type = serializers.CharField(required=False)
        product_id = serializers.CharField(required=False)
        user_id = serializers.CharField(required=False)

    class OutputSerializer(serializers.Serializer):
        class PointSerializer(TotalsSerializer):
            day = serializers.DateField()

        days = serializers.IntegerField()
        points = PointSerializer(many=True)

    @extend_schema(
        operation_id="usage_trends", parameters=[InputSerializer], responses=OutputSerializer
    )
    def get(self, request: Request) -> Response:
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        organization = optional_organization(request)
        today = (
            timezone.now().astimezone(organization.tz).date()
            if organization
            else timezone.now().date()
        )
        points = selectors.usage_trend(
            organization=organization,
            days=data["days"],
            today=today,
            service_type=data.get("service_type"),
            product_code=data.get("product_id"),
            user_id=data.get("user_id"),
        )
        return Response(
            {"days": data["days"], "points": [present_totals(point) for point in points]}
        )


class TopConsumersApi(APIView):
    """The highest-cost end users (or organisations, platform-wide) in a range."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = OPTIONAL_ORGANIZATION_ERRORS

    class InputSerializer(RangeSerializer):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=10)

    class OutputSerializer(serializers.Serializer):
        class ConsumerSerializer(TotalsSerializer):
            consumer = serializers.CharField()

        consumers = serializers.CharField(help_text="users or organizations")
        results = ConsumerSerializer(many=True)

    @extend_schema(
        operation_id="usage_top_consumers", parameters=[InputSerializer], responses=OutputSerializer
    )
    def get(self, request: Request) -> Response:
        organization = optional_organization(request)
        params = self.InputSerializer(
            data=request.query_params, context={"organization": organization}
        )
        params.is_valid(raise_exception=True)
        data = params.validated_data
        rows = selectors.top_consumers(
            organization=organization, limit=data["limit"], **_range_filters(data)
        )
        return Response(
            {
                "consumers": "users" if organization else "organizations",
                "results": [present_totals(row) for row in rows],
            }
        )


class WalletApi(APIView):
    """The organisation's wallet balance and credit grants."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = READ_ORGANIZATION_ERRORS

    class OutputSerializer(serializers.Serializer):
        class GrantSerializer(serializers.Serializer):
            amount = serializers.CharField()
            remaining = serializers.CharField()
            expires_at = serializers.DateTimeField(allow_null=True)
            reason = serializers.CharField()
            usable = serializers.BooleanField()

        organization_id = serializers.CharField()
        currency = serializers.CharField()
        wallet_balance = serializers.CharField()
        credit_balance = serializers.CharField()
        credit_grants = GrantSerializer(many=True)

    @extend_schema(
        operation_id="wallet_retrieve",
        parameters=[ORGANIZATION_ID_PARAMETER],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        now = timezone.now()
        grants = organization.credit_grants.filter(remaining__gt=0).order_by("expires_at", "id")
        currency = organization.currency
        return Response(
            {
                "organization_id": organization.slug,
                "currency": currency,
                **present_balances(
                    wallet=wallets.wallet_balance(organization),
                    credits=wallets.credit_balance(organization, now),
                    currency=currency,
                ),
                "credit_grants": [
                    {
                        "amount": format_amount(grant.amount, currency),
                        "remaining": format_amount(grant.remaining, currency),
                        "expires_at": grant.expires_at,
                        "reason": grant.reason,
                        "usable": grant.is_usable_at(now),
                    }
                    for grant in grants
                ],
            }
        )


class QuotaCheckApi(APIView):
    """Seed 003's quota check: how much of the plan's inclusion is left this period."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = (*ORGANIZATION_ERRORS, ProductNotFound)

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False)
        user_id = serializers.CharField(required=False, allow_blank=True)
        service_type = serializers.CharField(required=False)
        product_id = serializers.CharField(required=False)
        requested_amount = QuantityField()

        def validate(self, attrs):
            if not attrs.get("service_type") and not attrs.get("product_id"):
                raise serializers.ValidationError("Give service_type or product_id.")
            return attrs

    class OutputSerializer(serializers.Serializer):
        allowed = serializers.BooleanField()
        has_quota = serializers.BooleanField()
        scope = serializers.CharField(required=False)
        requested_amount = serializers.CharField()
        quota_limit = serializers.CharField(allow_null=True)
        used = serializers.CharField(allow_null=True)
        remaining = serializers.CharField(allow_null=True)
        period_start = serializers.DateTimeField(required=False)
        period_end = serializers.DateTimeField(required=False)
        reason = serializers.CharField(required=False)

    @extend_schema(operation_id="quota_check", request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        params = self.InputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        organization = organization_for_request(request)
        plan = pricing.effective_plan(organization.plan)
        if data.get("product_id"):
            # The same inclusion ingestion uses: the product's own, else its service type's.
            product = pricing.product_by_code(data["product_id"])
            inclusion = pricing.price_sheet(plan=plan, product=product).inclusion
        else:
            inclusion = pricing.service_type_inclusion(plan=plan, service_type=data["service_type"])
        requested = data["requested_amount"]
        if inclusion is None:
            return Response(
                {"allowed": True, "has_quota": False,
                 "requested_amount": format_quantity(requested),
                 "quota_limit": None, "used": None, "remaining": None,
                 "reason": "no inclusion: usage is billed as it comes"}
            )  # fmt: skip
        start, end = organization.period_bounds(timezone.now(), inclusion.period)
        used = selectors.inclusion_used(
            organization=organization, scope=inclusion.scope, period_start=start
        )
        remaining = max(Decimal(0), inclusion.quantity - used)
        return Response(
            {
                "allowed": requested <= remaining,
                "has_quota": True,
                "scope": inclusion.scope,
                "requested_amount": format_quantity(requested),
                "quota_limit": format_quantity(inclusion.quantity),
                "used": format_quantity(used),
                "remaining": format_quantity(remaining),
                "period_start": start,
                "period_end": end,
            }
        )
