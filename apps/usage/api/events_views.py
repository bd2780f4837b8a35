"""The OpenMeter-compatible API: CloudEvents in (``POST /events``), meters and their
queries out (``GET /meters``, ``GET /meters/<slug>/query``). A service that sends
OpenMeter events switches to the portal by changing its base URL and key."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import ErrorSerializer, error_payload
from apps.core.parsers import (
    CloudEventBatchJSONParser,
    CloudEventJSONParser,
    DecimalJSONParser,
)
from apps.core.renderers import ExactJSONRenderer
from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import SUBJECT_ERRORS, organization_for_subject
from apps.customers.errors import OrganizationNotFound, UnknownSubject
from apps.customers.models import ApiKey
from apps.pricing.cost_engine import format_amount, format_quantity
from apps.pricing.errors import InvalidUsage
from apps.usage import meters as meter_reads
from apps.usage.api.cloudevents import CloudEventResult, record_cloud_events
from apps.usage.api.parsing import parse_instant
from apps.usage.api.views import MAX_BATCH, actor_of
from apps.usage.errors import (
    RECORDING_ERRORS,
    BatchTooLarge,
    InvalidEvent,
    InvalidMeterData,
    MeterNotFound,
    UnknownEventType,
)
from apps.usage.ingestion import Outcome
from apps.usage.throttling import ApiKeyRateThrottle

ZERO = Decimal(0)
BATCH_MEDIA_TYPE = CloudEventBatchJSONParser.media_type
SINGLE_MEDIA_TYPE = CloudEventJSONParser.media_type


class CloudEventSerializer(serializers.Serializer):
    """A CloudEvents 1.0 event (for the schema; parsing is ``api/cloudevents``)."""

    specversion = serializers.CharField(required=False, help_text='"1.0" if given.')
    id = serializers.CharField(help_text="The idempotency key, unique per organisation.")
    source = serializers.CharField(required=False)
    type = serializers.CharField(help_text="Selects the meter (its `eventType`).")
    subject = serializers.CharField(help_text="The organisation: its `organization_id` (slug).")
    time = serializers.DateTimeField(required=False, help_text="RFC 3339; default: now.")
    datacontenttype = serializers.CharField(required=False)
    data = serializers.DictField(
        required=False, help_text="The meter's value properties and group-by fields."
    )


class EventsApi(APIView):
    """Ingests CloudEvents (OpenMeter's ``POST /api/v1/events``): one event as
    ``application/cloudevents+json`` (or a JSON object), a batch as
    ``application/cloudevents-batch+json`` (or a JSON array, up to 1,000 events). Every
    event is priced, paid, counted against budgets and deduplicated by its ``id`` exactly
    like ``usage/record``.

    One event: 204 when accepted (or a retry of an accepted one, with
    ``Idempotent-Replayed: true``); refused, the usual error with ``details.index`` 0 and
    ``details.id``. A batch: 200 with each event's result; one bad event never refuses the
    others; over 1,000 events, 413 ``batch_too_large`` and nothing is recorded."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.USAGE_WRITE
    error_types = (
        BatchTooLarge,
        InvalidEvent,
        InvalidMeterData,
        UnknownEventType,
        *SUBJECT_ERRORS,
        *RECORDING_ERRORS,
    )
    throttle_classes = [ApiKeyRateThrottle]
    checks_text_per_event = True
    parser_classes = [DecimalJSONParser, CloudEventJSONParser, CloudEventBatchJSONParser]

    class OutputSerializer(serializers.Serializer):
        accepted = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        rejected = serializers.IntegerField()
        results = serializers.ListField(
            child=inline_serializer(
                "CloudEventResult",
                {
                    "index": serializers.IntegerField(),
                    "id": serializers.CharField(allow_null=True),
                    "status": serializers.ChoiceField(
                        choices=[Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.REJECTED]
                    ),
                    "billing_id": serializers.CharField(required=False),
                    "total_cost": serializers.CharField(required=False),
                    "error": ErrorSerializer.BodySerializer(required=False),
                },
            )
        )

    @extend_schema(
        operation_id="events_ingest",
        request={
            SINGLE_MEDIA_TYPE: CloudEventSerializer,
            BATCH_MEDIA_TYPE: CloudEventSerializer(many=True),
            "application/json": CloudEventSerializer,
        },
        responses={
            204: OpenApiResponse(description="The event was accepted (or was already)."),
            200: OpenApiResponse(OutputSerializer, description="A batch: each event's result."),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if media_type == BATCH_MEDIA_TYPE and not isinstance(data, list):
            raise InvalidEvent({"non_field_errors": f"{BATCH_MEDIA_TYPE} is a JSON array."})
        if media_type == SINGLE_MEDIA_TYPE and not isinstance(data, dict):
            raise InvalidEvent({"non_field_errors": f"{SINGLE_MEDIA_TYPE} is one JSON object."})
        if not isinstance(data, dict | list):
            raise InvalidEvent({"non_field_errors": "An event object or an array of events."})
        batched = isinstance(data, list)
        raw_events = data if batched else [data]
        if len(raw_events) > MAX_BATCH:
            raise BatchTooLarge(details={"max_events": MAX_BATCH, "events": len(raw_events)})

        results = record_cloud_events(
            raw_events, api_key=request.auth, now=timezone.now(), actor=actor_of(request.auth)
        )
        if not batched:
            return _single_response(results[0])
        counts = {Outcome.ACCEPTED: 0, Outcome.DUPLICATE: 0, Outcome.REJECTED: 0}
        for result in results:
            counts[result.status] += 1
        return Response(
            {
                "accepted": counts[Outcome.ACCEPTED],
                "duplicates": counts[Outcome.DUPLICATE],
                "rejected": counts[Outcome.REJECTED],
                "results": [_present_result(result) for result in results],
            }
        )


def _single_response(result: CloudEventResult) -> Response:
    if result.status == Outcome.ACCEPTED:
        return Response(status=204)
    if result.status == Outcome.DUPLICATE:
        return Response(status=204, headers={"Idempotent-Replayed": "true"})
    error = result.error
    details = {**error.details, "index": result.index, "id": result.id}
    return Response(error_payload(error.code, error.message, details), status=error.status_code)


def _present_result(result: CloudEventResult) -> dict:
    body = {"index": result.index, "id": result.id, "status": result.status}
    if result.status == Outcome.REJECTED:
        error = result.error
        body["error"] = error_payload(error.code, error.message, error.details)["error"]
    else:
        record = result.record
        body["billing_id"] = record.billing_id
        body["total_cost"] = format_amount(record.total_amount, record.currency)
    return body


class MeterListApi(APIView):
    """The active meters, in OpenMeter's shape (plus the product and its dimensions)."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ

    class OutputSerializer(serializers.Serializer):
        id = serializers.CharField(help_text="The slug (OpenMeter accepts either).")
        slug = serializers.CharField()
        name = serializers.CharField()
        description = serializers.CharField()
        eventType = serializers.CharField()
        aggregation = serializers.ChoiceField(choices=["SUM", "COUNT"])
        valueProperty = serializers.CharField(
            allow_null=True, help_text="The one value path; null for COUNT or several values."
        )
        valueProperties = serializers.DictField(
            child=serializers.CharField(), help_text="Product dimension -> path into data."
        )
        groupBy = serializers.DictField(child=serializers.CharField())
        productId = serializers.CharField()
        dimensions = serializers.ListField(child=serializers.CharField())

    @extend_schema(operation_id="meters_list", responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response([_present_meter(meter) for meter in meter_reads.meters()])


def _present_meter(meter) -> dict:
    paths = list(meter.value_properties.values())
    return {
        "id": meter.slug,
        "slug": meter.slug,
        "name": meter.name,
        "description": meter.description,
        "eventType": meter.event_type,
        "aggregation": meter.aggregation,
        "valueProperty": paths[0] if len(paths) == 1 else None,
        "valueProperties": meter.value_properties,
        "groupBy": meter.group_by,
        "productId": meter.product.code,
        "dimensions": meter.dimensions,
    }


@extend_schema_field(
    {"type": "number", "description": "An exact decimal (read it as one to keep every digit)."}
)
class ExactNumberField(serializers.Field):
    """For the schema: a Decimal written as a JSON number (``ExactJSONRenderer``)."""


def _number(**kwargs):
    return ExactNumberField(**kwargs)


class MeterQueryApi(APIView):
    """What a meter recorded for the organisation (OpenMeter's meter query): per window of
    ``windowSize`` (aligned in ``windowTimeZone``; none: one row for the whole range) and
    per value of each ``groupBy`` name, only where every ``filterGroupBy[name]`` matches.

    ``value`` is the sum of the meter's values (one of them with ``dimension=``), and
    ``values`` each one's sum; both are exact decimals written as JSON numbers (OpenMeter's
    clients read numbers), never rounded through a float. ``cost`` (without ``dimension``)
    is what the row's events were charged, a decimal string like every amount of the API.
    Windows without events are left out."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = (MeterNotFound, OrganizationNotFound)
    renderer_classes = [ExactJSONRenderer]
    throttle_classes = [ApiKeyRateThrottle]

    class OutputSerializer(serializers.Serializer):
        class RowSerializer(serializers.Serializer):
            value = _number()
            values = serializers.DictField(
                child=_number(), required=False, help_text="Without `dimension`: each one's sum."
            )
            windowStart = serializers.DateTimeField()
            windowEnd = serializers.DateTimeField()
            subject = serializers.CharField()
            groupBy = serializers.DictField(child=serializers.CharField(allow_null=True))
            cost = serializers.CharField(
                required=False,
                help_text="Without `dimension`: what the row's events were charged (a string).",
            )

        windowSize = serializers.CharField(allow_null=True)
        windowTimeZone = serializers.CharField()
        data = RowSerializer(many=True)

        def get_fields(self):
            fields = super().get_fields()
            fields["from"] = serializers.DateTimeField(allow_null=True)
            fields["to"] = serializers.DateTimeField()
            return fields

    @extend_schema(
        operation_id="meters_query",
        parameters=[
            OpenApiParameter(
                "subject",
                str,
                description="The organisation (its slug): a service key names it, an "
                "organisation key may (its own).",
            ),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="RFC 3339, inclusive."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Exclusive; default now."),
            OpenApiParameter("windowSize", str, enum=list(meter_reads.WINDOW_SIZES)),
            OpenApiParameter("windowTimeZone", str, description="IANA name; default UTC."),
            OpenApiParameter("groupBy", str, many=True, description="The meter's group-by names."),
            OpenApiParameter(
                "filterGroupBy",
                {"type": "object", "additionalProperties": {"type": "string"}},
                style="deepObject",
                explode=True,
                description="`filterGroupBy[agent_id]=a1`: only events with that value.",
            ),
            OpenApiParameter("dimension", str, description="One of the meter's dimensions."),
        ],
        responses=OutputSerializer,
    )
    def get(self, request: Request, slug: str) -> Response:
        meter = meter_reads.meter_by_slug(slug)
        if meter is None:
            raise MeterNotFound(details={"meter": slug})
        params = request.query_params
        query = _parse_query(params, meter)
        subject = query.pop("subject")
        api_key: ApiKey = request.auth
        if subject is None and api_key.is_service:
            raise InvalidUsage({"subject": "A service key names the organisation in `subject`."})
        subject = subject or api_key.organization.slug
        try:
            organization = organization_for_subject(subject, api_key=api_key, allow_suspended=True)
        except UnknownSubject as error:  # as every read of the API answers it
            raise OrganizationNotFound(details=error.details) from None
        dimension = query.pop("dimension")
        rows = meter_reads.meter_usage(meter=meter, organization=organization, **query)

        start, end, size, tz = query["start"], query["end"], query["window_size"], query["tz"]
        data = []
        for row in rows:
            window_start = row.window_start if size else start
            item = {
                "value": row.values[dimension] if dimension else sum(row.values.values(), ZERO),
                "windowStart": _instant(window_start, tz),
                "windowEnd": _instant(meter_reads.window_end(window_start, size, tz), tz)
                if size
                else _instant(end, tz),
                "subject": subject,
                "groupBy": row.group,
            }
            if not dimension:  # the events' cost is of all their dimensions, not one's
                item["values"] = row.values
                item["cost"] = format_quantity(row.cost)
            data.append(item)
        return Response(
            {
                "from": _instant(query["start"], tz),
                "to": _instant(end, tz),
                "windowSize": size,
                "windowTimeZone": tz.key,
                "data": data,
            }
        )


DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=400)
MAX_WINDOWS = 10_000
WINDOW_LENGTH = {"MINUTE": timedelta(minutes=1), "HOUR": timedelta(hours=1),
                 "DAY": timedelta(days=1), "MONTH": timedelta(days=28)}  # fmt: skip


def _instant(value: datetime | None, tz) -> str | None:
    if value is None:
        return None
    return value.astimezone(tz).isoformat().replace("+00:00", "Z")


def _parse_query(params, meter) -> dict:
    """The meter query's parameters, checked; raises InvalidUsage naming the bad ones."""
    problems: dict[str, object] = {}
    instants = {}
    for name in ("from", "to"):
        value = params.get(name)
        parsed = parse_instant(value) if value else None
        if value and parsed is None:
            problems[name] = "An RFC 3339 date-time."
        elif parsed is not None:
            instants[name] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    end = instants.get("to") or timezone.now()
    # Without ``from``: the last ``DEFAULT_RANGE`` (a query reads raw events: bounded).
    start = instants.get("from") or end - DEFAULT_RANGE
    if start >= end:
        problems["from"] = "Must be before `to`."
    elif end - start > MAX_RANGE:
        problems["from"] = f"At most {MAX_RANGE.days} days before `to`."

    size = params.get("windowSize") or None
    if size is not None and size.upper() not in meter_reads.WINDOW_SIZES:
        problems["windowSize"] = f"One of: {', '.join(meter_reads.WINDOW_SIZES)}."
    elif size is not None and "from" not in problems:
        windows = (end - start) / WINDOW_LENGTH[size.upper()]
        if windows > MAX_WINDOWS:
            problems["windowSize"] = (
                f"{int(windows):,} windows; at most {MAX_WINDOWS:,}: a larger window or a "
                "shorter range."
            )
    tz_name = params.get("windowTimeZone") or "UTC"
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory
        problems["windowTimeZone"] = "An IANA time zone, like Europe/Berlin."
        tz = None

    known = set(meter.group_by)
    # ``subject`` is always one organisation here: grouping by it changes nothing.
    group_by = [name for name in dict.fromkeys(params.getlist("groupBy")) if name != "subject"]
    unknown = [name for name in group_by if name not in known]
    filters = {}
    for name in params:
        if name.startswith("filterGroupBy[") and name.endswith("]"):
            key = name[len("filterGroupBy[") : -1]
            if key not in known:
                unknown.append(key)
            else:
                filters[key] = params.get(name)
    if unknown:
        choices = ", ".join(sorted(known)) or "none"
        problems["groupBy"] = f"Not group-by names of this meter: {', '.join(unknown)} ({choices})."
    dimension = params.get("dimension") or None
    if dimension is not None and dimension not in meter.dimensions:
        problems["dimension"] = f"One of: {', '.join(meter.dimensions)}."
    subjects = {subject for subject in params.getlist("subject") if subject}
    if len(subjects) > 1:
        problems["subject"] = "One subject per query."
    if problems:
        raise InvalidUsage(problems)
    return {
        "subject": subjects.pop() if subjects else None,
        "start": start,
        "end": end,
        "window_size": size.upper() if size else None,
        "tz": tz,
        "group_by": group_by,
        "filters": filters,
        "dimension": dimension,
    }
