"""The usage API: record one event, record a batch."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import text
from apps.core.errors import ErrorSerializer, PortalError, error_payload
from apps.customers import wallets
from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import ORGANIZATION_ERRORS, organization_for_request
from apps.customers.models import ApiKey
from apps.pricing.cost_engine import format_amount
from apps.pricing.errors import InvalidUsage
from apps.usage.api.parsing import parse_event
from apps.usage.api.presenters import BillingRecordSerializer, present_balances, present_record
from apps.usage.errors import RECORDING_ERRORS, BatchTooLarge
from apps.usage.ingestion import Outcome, ingest
from apps.usage.throttling import ApiKeyRateThrottle

MAX_BATCH = 1000
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    description="1-255 characters, unique per organisation; `event_id` in the body does the "
    "same (both given: they must agree). Without either, the post is never deduplicated.",
)


def actor_of(api_key: ApiKey) -> str:
    return f"api:{api_key.prefix}"


class EventSerializer(serializers.Serializer):
    """Seed 003's usage record request (for the schema; parsing is ``api/parsing``)."""

    event_id = serializers.CharField(required=False)
    organization_id = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False)
    product_id = serializers.CharField()
    service_type = serializers.CharField(required=False)
    usage_amount = serializers.DecimalField(max_digits=28, decimal_places=12, required=False)
    dimensions = serializers.DictField(required=False)
    billing_method = serializers.CharField(required=False)
    session_id = serializers.CharField(required=False)
    usage_details = serializers.DictField(required=False)
    occurred_at = serializers.DateTimeField(required=False)


class UsageRecordApi(APIView):
    """Records one usage event, prices it and bills it (seed 003's usage/record)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.USAGE_WRITE
    error_types = (*ORGANIZATION_ERRORS, *RECORDING_ERRORS)
    throttle_classes = [ApiKeyRateThrottle]

    class OutputSerializer(BillingRecordSerializer):
        success = serializers.BooleanField()
        duplicate = serializers.BooleanField()
        total_cost = serializers.CharField()
        wallet_balance = serializers.CharField()
        credit_balance = serializers.CharField()
        budgets = serializers.ListField(
            child=serializers.DictField(),
            help_text="Budgets this event counted against, as they stand after it.",
        )

    @extend_schema(
        operation_id="usage_record",
        request=EventSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: OutputSerializer, 200: OutputSerializer},
    )
    def post(self, request: Request) -> Response:
        organization = organization_for_request(request)
        event = parse_event(
            request.data, header_key=request.headers.get("Idempotency-Key"), now=timezone.now()
        )
        outcomes = ingest(
            organization=organization,
            events=[event],
            api_key=request.auth,
            actor=actor_of(request.auth),
        )
        outcome = outcomes[0]
        if outcome.status == Outcome.REJECTED:
            raise outcome.error
        body = {
            "success": True,
            "duplicate": outcome.status == Outcome.DUPLICATE,
            **present_record(outcome.record, organization_slug=organization.slug),
            "total_cost": format_amount(outcome.record.total_amount, outcome.record.currency),
            **present_balances(
                wallet=_known(outcomes.wallet_balance, wallets.wallet_balance, organization),
                credits=_known(outcomes.credit_balance, wallets.credit_balance, organization),
                currency=outcome.record.currency,
            ),
        }
        body["budgets"] = [
            {
                "budget_id": budget.pk,
                "name": budget.name,
                "hard": budget.is_hard,
                "limit": format_amount(budget.limit, budget.currency),
                "spent": format_amount(spent, budget.currency),
                "remaining": format_amount(max(budget.limit - spent, Decimal(0)), budget.currency),
            }
            for budget, spent in outcome.budgets
        ]
        if outcome.status == Outcome.DUPLICATE:
            return Response(body, status=200, headers={"Idempotent-Replayed": "true"})
        return Response(body, status=201)


class UsageBatchApi(APIView):
    """Records up to 1,000 events; answers each (accepted, duplicate, or its error). One bad
    event never rejects the others."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.USAGE_WRITE
    error_types = (BatchTooLarge,)
    throttle_classes = [ApiKeyRateThrottle]
    checks_text_per_event = True

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(required=False)
        events = EventSerializer(many=True)

    class OutputSerializer(serializers.Serializer):
        accepted = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        rejected = serializers.IntegerField()
        results = serializers.ListField(
            child=inline_serializer(
                "BatchResult",
                {
                    "index": serializers.IntegerField(),
                    "status": serializers.CharField(),
                    "event_id": serializers.CharField(allow_null=True),
                    "billing_id": serializers.CharField(required=False),
                    "total_cost": serializers.CharField(required=False),
                    "billing_method": serializers.CharField(required=False),
                    "billing_status": serializers.CharField(required=False),
                    "error": ErrorSerializer.BodySerializer(required=False),
                },
            )
        )

    @extend_schema(operation_id="usage_batch", request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        data = request.data
        raw_events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(raw_events, list):
            raise InvalidUsage({"events": "A list of events."})
        unstorable = text.unstorable({k: v for k, v in data.items() if k != "events"})
        if unstorable:
            raise InvalidUsage(unstorable)
        if len(raw_events) > MAX_BATCH:
            raise BatchTooLarge(details={"max_events": MAX_BATCH, "events": len(raw_events)})
        api_key: ApiKey = request.auth
        default_org = data.get("organization_id")
        now = timezone.now()

        results: list[dict | None] = [None] * len(raw_events)
        groups: dict[str | None, list[tuple[int, object]]] = {}
        for index, raw in enumerate(raw_events):
            try:
                event = parse_event(raw, now=now)
            except PortalError as error:
                results[index] = _rejected(index, raw, error)
                continue
            slug = raw.get("organization_id") or default_org
            groups.setdefault(slug, []).append((index, event))

        for slug, members in groups.items():
            try:  # the single call's tenancy rules, per organisation the batch names
                organization = organization_for_request(request, organization_id=slug)
            except PortalError as error:
                for index, _ in members:
                    results[index] = _rejected(index, raw_events[index], error)
                continue
            outcomes = ingest(
                organization=organization,
                events=[event for _, event in members],
                api_key=api_key,
                actor=actor_of(api_key),
            )
            for (index, event), outcome in zip(members, outcomes, strict=True):
                results[index] = _result(index, event.idempotency_key, outcome)

        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for result in results:
            counts[result["status"]] += 1
        return Response(
            {
                "accepted": counts["accepted"],
                "duplicates": counts["duplicate"],
                "rejected": counts["rejected"],
                "results": results,
            }
        )


def _known(value, read, organization):
    return value if value is not None else read(organization)


def _rejected(index: int, raw, error: PortalError) -> dict:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    return {
        "index": index,
        "status": Outcome.REJECTED,
        "event_id": text.shown(event_id) if isinstance(event_id, str) else None,
        "error": error_payload(error.code, error.message, error.details)["error"],
    }


def _result(index: int, key: str, outcome: Outcome) -> dict:
    if outcome.status == Outcome.REJECTED:
        return {
            "index": index,
            "status": outcome.status,
            "event_id": key,
            "error": error_payload(
                outcome.error.code, outcome.error.message, outcome.error.details
            )["error"],
        }
    record = outcome.record
    return {
        "index": index,
        "status": outcome.status,
        "event_id": key,
        "billing_id": record.billing_id,
        "total_cost": format_amount(record.total_amount, record.currency),
        "billing_method": record.billing_method,
        "billing_status": record.status,
    }
