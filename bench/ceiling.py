"""The three-write ceiling: what a DRF view that authenticates an organisation key, reads
one JSON event and writes the least an enforced event needs can do on this machine.

In one transaction: one conditional budget UPDATE (the hot row every event of the
organisation meets), one insert of a usage-event-shaped row and one rollup upsert (a second
hot row), then 201. No pricing, no wallet, no ledger: the ceiling the portal's enforced path
is measured against. Its tables are created by ``bench/ingest.py``."""

from __future__ import annotations

import json

from django.db import connection, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import organization_for_request
from apps.customers.models import ApiKey
from apps.usage.throttling import ApiKeyRateThrottle

COST = "0.000360"


class CeilingApi(APIView):
    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.USAGE_WRITE
    throttle_classes = [ApiKeyRateThrottle]

    def post(self, request: Request) -> Response:
        organization = organization_for_request(request)
        event = request.data
        now = timezone.now()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_ceiling_event (organization_id, idempotency_key,"
                " product_id, user_id, usage_details, amount, occurred_at)"
                " VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)",
                [organization.pk, event["event_id"], event["product_id"], event["user_id"],
                 _json(event.get("usage_details", {})), COST, now],
            )  # fmt: skip
            cursor.execute(
                "UPDATE budgets_budgetperiod SET spent = spent + %s WHERE id = ("
                " SELECT p.id FROM budgets_budgetperiod p JOIN budgets_budget b"
                " ON b.id = p.budget_id WHERE b.organization_id = %s"
                " ORDER BY p.id LIMIT 1) AND spent + %s <= 1000000000 RETURNING spent",
                [COST, organization.pk, COST],
            )
            if cursor.fetchone() is None:
                return Response({"error": {"code": "budget_exceeded"}}, status=402)
            cursor.execute(
                "INSERT INTO bench_ceiling_rollup VALUES (%s, %s, %s, %s, 1)"
                " ON CONFLICT (organization_id, product_id, day) DO UPDATE SET"
                " cost = bench_ceiling_rollup.cost + excluded.cost,"
                " event_count = bench_ceiling_rollup.event_count + 1",
                [organization.pk, event["product_id"], now.date(), COST],
            )
        return Response({"success": True, "total_cost": COST}, status=201)


def _json(value) -> str:
    return json.dumps(value)
