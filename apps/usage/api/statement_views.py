"""Statements over the API: ``GET /api/v1/billing/statements`` and ``/<id>``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import READ_ORGANIZATION_ERRORS, organization_for_request
from apps.customers.api.views import ORGANIZATION_ID_PARAMETER
from apps.customers.models import ApiKey
from apps.pricing.cost_engine import format_amount, format_quantity
from apps.usage.models import Statement


class StatementCursor(CursorPagination):
    ordering = ("-period_start", "-id")
    page_size = 24
    page_size_query_param = "limit"
    max_page_size = 100


class LineSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    product_id = serializers.CharField(allow_null=True)
    dimension = serializers.CharField()
    quantity = serializers.CharField()
    included_quantity = serializers.CharField()
    billable_quantity = serializers.CharField()
    unit_price = serializers.CharField()
    amount_unrounded = serializers.CharField()
    amount = serializers.CharField()


class StatementSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    organization_id = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    currency = serializers.CharField()
    status = serializers.CharField()
    plan = serializers.CharField(allow_null=True)
    usage_total = serializers.CharField()
    unrounded_usage = serializers.CharField()
    rounding_difference = serializers.CharField()
    base_fee = serializers.CharField()
    minimums = serializers.CharField()
    credits_applied = serializers.CharField()
    wallet_paid = serializers.CharField()
    refunds = serializers.CharField()
    adjustments = serializers.CharField()
    total_due = serializers.CharField()
    finalized_at = serializers.DateTimeField(allow_null=True)


class StatementDetailSerializer(StatementSerializer):
    lines = LineSerializer(many=True)


def present_statement(statement: Statement, *, lines: bool = False) -> dict:
    currency = statement.currency
    data = {
        "id": statement.pk,
        "organization_id": statement.organization.slug,
        "period_start": statement.period_start.isoformat(),
        "period_end": statement.period_end.isoformat(),
        "currency": currency,
        "status": statement.status,
        "plan": statement.plan.code if statement.plan else None,
        **{
            name: format_amount(getattr(statement, name), currency)
            for name in (
                "usage_total",
                "base_fee",
                "minimums",
                "credits_applied",
                "wallet_paid",
                "refunds",
                "adjustments",
                "total_due",
            )
        },  # fmt: skip
        "unrounded_usage": format_quantity(statement.unrounded_usage),
        "rounding_difference": format_quantity(statement.rounding_difference),
        "finalized_at": statement.finalized_at.isoformat() if statement.finalized_at else None,
    }
    if lines:
        data["lines"] = [
            {
                "position": line.position,
                "kind": line.kind,
                "description": line.description,
                "product_id": line.product.code if line.product else None,
                "dimension": line.dimension,
                "quantity": format_quantity(line.quantity),
                "included_quantity": format_quantity(line.included_quantity),
                "billable_quantity": format_quantity(line.billable_quantity),
                "unit_price": format_quantity(line.unit_price),
                "amount_unrounded": format_quantity(line.amount_unrounded),
                "amount": format_amount(line.amount, currency),
            }
            for line in statement.lines.select_related("product")
        ]
    return data


class StatementListApi(APIView):
    """The organisation's final statements, newest period first (cursor pagination)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = READ_ORGANIZATION_ERRORS

    @extend_schema(
        operation_id="billing_statements_list",
        parameters=[
            ORGANIZATION_ID_PARAMETER,
            OpenApiParameter("cursor", str, description="The page after (or before) another."),
            OpenApiParameter("limit", int, description="Statements a page (24; at most 100)."),
        ],
        responses=inline_serializer(
            "PaginatedStatementList",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": StatementSerializer(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        statements = Statement.objects.filter(
            organization=organization, status=Statement.Status.FINAL
        ).select_related("organization", "plan")
        paginator = StatementCursor()
        page = paginator.paginate_queryset(statements, request, view=self)
        return paginator.get_paginated_response([present_statement(s) for s in page])


class StatementDetailApi(APIView):
    """One final statement with its lines."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = READ_ORGANIZATION_ERRORS

    @extend_schema(
        operation_id="billing_statements_detail",
        parameters=[ORGANIZATION_ID_PARAMETER],
        responses=StatementDetailSerializer,
    )
    def get(self, request: Request, statement_id: int) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        statement = get_object_or_404(
            Statement.objects.select_related("organization", "plan"),
            pk=statement_id, organization=organization, status=Statement.Status.FINAL,
        )  # fmt: skip
        return Response(present_statement(statement, lines=True))
