"""The OpenMeter-compatible API: CloudEvents in through the one ingestion path (same
pricing, budgets and idempotency as usage/record), meters and their queries out."""

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from apps.budgets.models import Budget
from apps.customers.services import issue_api_key
from apps.usage.models import BillingRecord, DailyUsage, Meter, UsageEvent
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"
SINGLE, BATCH = "application/cloudevents+json", "application/cloudevents-batch+json"
QUERY = "/api/v1/meters/agent_invocation/query"


def post(api_client, key, body, content_type=SINGLE):
    return api_client.post(
        EVENTS, json.dumps(body, cls=DjangoJSONEncoder), content_type=content_type, **bearer(key)
    )


def invocation(event_id, *, agent="agent-1", model="sonnet", tokens_in=100, tokens_out=10,
               at=None, subject="acme", **overrides):  # fmt: skip
    """An agent invocation as seed 001's OpenMeter service sends it, with the CloudEvents
    attributes an OpenMeter client adds."""
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "agents-api",
        "type": "agent_invocation",
        "subject": subject,
        "time": (at or timezone.now() - timedelta(hours=1)).isoformat(),
        "data": {"agent_id": agent, "model": model, "tokens_input": tokens_in,
                 "tokens_output": tokens_out, "duration_ms": 1830},
    }  # fmt: skip
    event.update(overrides)
    return event


@pytest.fixture
def meter(llm):
    """seed 001's agent_invocation on the llm product ($2/M in, $8/M out, 1,000 tokens a
    month included), grouped by agent and model."""
    return Meter.objects.create(
        slug="agent_invocation",
        name="Agent invocations",
        event_type="agent_invocation",
        product=llm,
        value_properties={"input_tokens": "$.tokens_input", "output_tokens": "$.tokens_output"},
        group_by={"agent_id": "$.agent_id", "model": "$.model"},
    )


@pytest.fixture
def call_meter(calls):
    """API calls ($0.01 each) counted from ``data.count``."""
    return Meter.objects.create(
        slug="api_calls",
        name="API calls",
        event_type="api_call",
        product=calls,
        value_properties={"units": "$.count"},
        group_by={"user_id": "$.user"},
    )


# --- ingestion ------------------------------------------------------------------------------


def test_a_single_cloudevent_is_recorded_as_usage_of_the_meters_product(
    api_client, key, meter, org
):
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=30)

    response = post(api_client, key, invocation("evt-1", tokens_in=1500, tokens_out=200, at=at))

    assert response.status_code == 204, response.content
    assert response.content == b""
    event = UsageEvent.objects.get()
    assert (event.organization, event.product) == (org, meter.product)
    assert event.idempotency_key == "evt-1"
    assert event.occurred_at == at
    assert event.quantities == {"input_tokens": "1500", "output_tokens": "200"}
    assert event.usage_details["agent_id"] == "agent-1"
    assert event.usage_details["model"] == "sonnet"
    assert event.usage_details["cloudevent"]["type"] == "agent_invocation"
    assert event.usage_details["cloudevent"]["source"] == "agents-api"
    record = event.billing_record
    # 1,000 of the 1,700 tokens are the plan's; 500 input and 200 output tokens are billed.
    assert record.total_amount == D("0.0026")
    assert DailyUsage.objects.get().quantity == D(1700)


def test_a_batch_answers_each_event_with_its_billing_record(api_client, key, meter):
    events = [invocation(f"evt-{n}", tokens_in=1000 * n) for n in range(1, 4)]

    response = post(api_client, key, events, content_type=BATCH)

    body = response.json()
    assert response.status_code == 200, body
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 0)
    assert [(r["index"], r["id"], r["status"]) for r in body["results"]] == [
        (0, "evt-1", "accepted"), (1, "evt-2", "accepted"), (2, "evt-3", "accepted"),
    ]  # fmt: skip
    records = {r.event.idempotency_key: r for r in BillingRecord.objects.select_related("event")}
    for result in body["results"]:
        assert result["billing_id"] == records[result["id"]].billing_id
        assert D(result["total_cost"]) == records[result["id"]].total_amount


def test_plain_json_takes_one_event_or_an_array(api_client, key, meter):
    one = post(api_client, key, invocation("evt-1"), content_type="application/json")
    many = post(
        api_client, key, [invocation("evt-2"), invocation("evt-3")],
        content_type="application/json; charset=utf-8",
    )  # fmt: skip

    assert one.status_code == 204
    assert many.status_code == 200 and many.json()["accepted"] == 2
    assert UsageEvent.objects.count() == 3


@pytest.mark.parametrize(
    ("body", "content_type"),
    [([{"id": "x"}], SINGLE), ({"id": "x"}, BATCH), ("just text", "application/json")],
)
def test_the_body_must_match_its_content_type(api_client, key, meter, body, content_type):
    response = post(api_client, key, body, content_type=content_type)

    assert response.status_code == 400
    assert error_code(response) == "invalid_event"


def test_a_retried_event_is_a_duplicate_and_bills_once(api_client, key, meter, org):
    event = invocation("evt-1", tokens_in=5000)

    first = post(api_client, key, event)
    second = post(api_client, key, event)
    in_a_batch = post(api_client, key, [event, invocation("evt-2")], content_type=BATCH)

    assert first.status_code == second.status_code == 204
    assert "Idempotent-Replayed" not in first and second["Idempotent-Replayed"] == "true"
    results = in_a_batch.json()["results"]
    assert [r["status"] for r in results] == ["duplicate", "accepted"]
    first_record = BillingRecord.objects.get(event__idempotency_key="evt-1")
    assert results[0]["billing_id"] == first_record.billing_id
    assert UsageEvent.objects.filter(idempotency_key="evt-1").count() == 1
    assert DailyUsage.objects.get().event_count == 2


def test_a_retry_after_staff_edited_the_meter_is_still_a_duplicate(api_client, key, meter):
    event = invocation("evt-1")
    assert post(api_client, key, event).status_code == 204
    meter.group_by = {"agent_id": "$.agent_id"}  # no longer groups by model
    meter.save()

    retry = post(api_client, key, event)

    assert retry.status_code == 204 and retry["Idempotent-Replayed"] == "true"
    assert UsageEvent.objects.filter(idempotency_key="evt-1").count() == 1


def test_usage_record_cannot_pass_itself_off_as_a_meters_event(api_client, key, meter):
    response = api_client.post("/api/v1/usage/record", {
        "product_id": "llm", "dimensions": {"input_tokens": 5},
        "usage_details": {"cloudevent": {"type": "agent_invocation"}},
    }, format="json", **bearer(key))  # fmt: skip

    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert "usage_details.cloudevent" in response.json()["error"]["details"]["fields"]
    assert not UsageEvent.objects.exists()


def test_a_retry_without_a_time_is_still_the_same_event(api_client, key, meter):
    event = invocation("evt-1")
    del event["time"]

    first = post(api_client, key, event)
    second = post(api_client, key, event)

    assert first.status_code == second.status_code == 204
    assert second["Idempotent-Replayed"] == "true"
    assert UsageEvent.objects.count() == 1


def test_the_same_id_with_other_data_is_an_idempotency_conflict(api_client, key, meter):
    at = timezone.now() - timedelta(hours=2)
    post(api_client, key, invocation("evt-1", tokens_in=100, at=at))

    single = post(api_client, key, invocation("evt-1", tokens_in=101, at=at))
    batch = post(
        api_client, key,
        [invocation("evt-1", agent="agent-2", at=at), invocation("evt-2", at=at)],
        content_type=BATCH,
    )  # fmt: skip

    assert single.status_code == 409
    assert error_code(single) == "idempotency_conflict"
    assert single.json()["error"]["details"]["index"] == 0
    assert single.json()["error"]["details"]["id"] == "evt-1"
    results = batch.json()["results"]
    assert results[0]["status"] == "rejected"
    assert results[0]["error"]["code"] == "idempotency_conflict"
    assert results[1]["status"] == "accepted"
    assert UsageEvent.objects.get(idempotency_key="evt-1").quantities["input_tokens"] == "100"


def _without(event, name):
    event = dict(event)
    del event[name]
    return event


def _data(**changes):
    data = {"agent_id": "agent-1", "model": "sonnet", "tokens_input": 100, "tokens_output": 10}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not ...}


BAD_EVENTS = [
    # (event, code, the field or path named in details.fields)
    (_without(invocation("e"), "id"), "invalid_event", "id"),
    (invocation(""), "invalid_event", "id"),
    (invocation("x" * 256), "invalid_event", "id"),
    (_without(invocation("e"), "subject"), "invalid_event", "subject"),
    (_without(invocation("e"), "type"), "invalid_event", "type"),
    (invocation("e", specversion="0.3"), "invalid_event", "specversion"),
    (invocation("e", time="yesterday"), "invalid_event", "time"),
    (invocation("e", time="2026-02-30T10:00:00Z"), "invalid_event", "time"),  # no such day
    (invocation("e", type=["agent_invocation"]), "invalid_event", "type"),
    (invocation("e", data=[1, 2]), "invalid_event", "data"),
    (invocation("e", type="unheard_of"), "unknown_event_type", None),
    (invocation("e", data=_data(tokens_input=...)), "invalid_meter_data", "$.tokens_input"),
    (invocation("e", data=_data(tokens_input="many")), "invalid_meter_data", "$.tokens_input"),
    (invocation("e", data=_data(tokens_output=True)), "invalid_meter_data", "$.tokens_output"),
    (invocation("e", data=_data(tokens_output=-5)), "invalid_meter_data", "$.tokens_output"),
    (invocation("e", data=_data(agent_id={"a": 1})), "invalid_meter_data", "$.agent_id"),
    (invocation("e", subject="someone-else"), "unknown_subject", None),
    (invocation("e", subject="nobody"), "unknown_subject", None),
    (invocation("e", time="2020-01-01T00:00:00Z"), "event_too_old", None),
]


@pytest.mark.parametrize(("event", "code", "field"), BAD_EVENTS)
def test_a_bad_single_event_is_400_with_its_index_and_code(
    api_client, key, meter, event, code, field
):
    OrganizationFactory(slug="someone-else")

    response = post(api_client, key, event)

    assert response.status_code == 400, response.content
    assert error_code(response) == code
    details = response.json()["error"]["details"]
    assert details["index"] == 0
    if field is not None:
        assert field in details["fields"]
    assert not UsageEvent.objects.exists()


def test_in_a_batch_each_bad_event_is_named_by_index_and_code_and_the_others_accepted(
    api_client, key, meter
):
    OrganizationFactory(slug="someone-else")
    events = []
    for n, (event, _, _) in enumerate(BAD_EVENTS):
        events += [invocation(f"good-{n}"), event]

    response = post(api_client, key, events, content_type=BATCH)

    body = response.json()
    assert response.status_code == 200, body
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(events)))
    for n, (_, code, _) in enumerate(BAD_EVENTS):
        good, bad = results[2 * n], results[2 * n + 1]
        assert (good["status"], good["id"]) == ("accepted", f"good-{n}")
        assert bad["status"] == "rejected", bad
        assert bad["error"]["code"] == code, (n, bad)
    assert (body["accepted"], body["rejected"]) == (len(BAD_EVENTS), len(BAD_EVENTS))
    assert UsageEvent.objects.count() == len(BAD_EVENTS)


def test_a_batch_over_the_usage_batch_limit_is_refused_whole(api_client, key, meter):
    events = [invocation(f"evt-{n}") for n in range(1001)]

    response = post(api_client, key, events, content_type=BATCH)

    assert response.status_code == 413  # as usage/batch answers the same
    assert error_code(response) == "batch_too_large"
    assert response.json()["error"]["details"] == {"max_events": 1000, "events": 1001}
    assert not UsageEvent.objects.exists()


def test_an_organisation_key_cannot_record_for_another_organisation(api_client, key, meter):
    other = OrganizationFactory(slug="rival")

    response = post(api_client, key, invocation("evt-1", subject=other.slug))

    assert response.status_code == 400
    assert error_code(response) == "unknown_subject"
    assert not UsageEvent.objects.exists()


def test_a_service_key_records_for_the_organisation_its_subject_names(api_client, meter, org):
    service_key = issue_api_key(name="svc", service=True).raw_key

    named = post(api_client, service_key, invocation("evt-1", subject="acme"))
    unknown = post(api_client, service_key, invocation("evt-2", subject="nobody"))

    assert named.status_code == 204
    assert UsageEvent.objects.get().organization == org
    assert error_code(unknown) == "unknown_subject"


def test_a_key_without_the_usage_scope_is_refused(api_client, org, meter):
    reader = issue_api_key(name="reader", organization=org, scopes=["billing:read"]).raw_key

    response = post(api_client, reader, invocation("evt-1"))

    assert response.status_code == 403
    assert error_code(response) == "permission_denied"


def test_an_event_costs_the_same_via_events_as_via_usage_record(api_client, plan, meter):
    # Two organisations on one plan: the same usage, one through each surface.
    by_record = OrganizationFactory(slug="by-record", plan=plan)
    by_events = OrganizationFactory(slug="by-events", plan=plan)
    record_key = issue_api_key(name="k", organization=by_record).raw_key
    events_key = issue_api_key(name="k", organization=by_events).raw_key
    at = timezone.now() - timedelta(hours=3)
    # Inside the plan's 1,000 tokens, across it, beyond it.
    usage = [(600, 100), (500, 2000), (3000, 700)]

    for n, (tokens_in, tokens_out) in enumerate(usage):
        recorded = api_client.post(
            "/api/v1/usage/record",
            {"event_id": f"e{n}", "product_id": "llm", "occurred_at": at.isoformat(),
             "dimensions": {"input_tokens": tokens_in, "output_tokens": tokens_out}},
            format="json", **bearer(record_key),
        )  # fmt: skip
        sent = post(
            api_client, events_key,
            invocation(f"e{n}", subject="by-events", tokens_in=tokens_in, tokens_out=tokens_out,
                       at=at),
        )  # fmt: skip
        assert recorded.status_code == 201 and sent.status_code == 204

    def charged(organization):
        return [
            (r.usage_amount, r.included_quantity, r.unit_price, r.total_amount, r.billing_method,
             r.status, r.breakdown)
            for r in BillingRecord.objects.filter(organization=organization).order_by("id")
        ]  # fmt: skip

    assert charged(by_events) == charged(by_record)
    assert [row[3] for row in charged(by_events)] == [D(0), D("0.0164"), D("0.0116")]


def test_a_hard_budget_refuses_an_event_via_events_as_via_usage_record(
    api_client, org, key, call_meter
):
    cap = Budget.objects.create(organization=org, name="cap", limit=D("1.00"), currency="USD")

    def call(event_id, count):
        return {"specversion": "1.0", "id": event_id, "type": "api_call", "subject": "acme",
                "data": {"count": count, "user": "u1"}}  # fmt: skip

    # $0.60
    fits = api_client.post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 60}, format="json",
        **bearer(key),
    )  # fmt: skip
    refused_by_record = api_client.post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 50}, format="json",
        **bearer(key),
    )  # fmt: skip
    refused_by_events = post(api_client, key, call("c1", 50))
    in_a_batch = post(api_client, key, [call("c2", 50), call("c3", 40)], content_type=BATCH)

    assert fits.status_code == 201
    assert refused_by_record.status_code == refused_by_events.status_code == 402
    assert error_code(refused_by_record) == error_code(refused_by_events) == "budget_exceeded"
    by_record = refused_by_record.json()["error"]["details"]
    by_events = refused_by_events.json()["error"]["details"]
    assert by_events["index"] == 0 and by_events["id"] == "c1"
    assert {k: by_events[k] for k in by_record} == by_record
    results = in_a_batch.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]  # $0.40 just fits
    assert results[0]["error"]["code"] == "budget_exceeded"
    assert cap.periods.get().spent == D("1.00")


def test_a_count_meter_records_one_unit_per_event(api_client, key, calls):
    Meter.objects.create(slug="pings", name="Pings", event_type="ping", product=calls,
                         aggregation=Meter.Aggregation.COUNT)  # fmt: skip
    events = [{"id": f"p{n}", "type": "ping", "subject": "acme"} for n in range(3)]

    post(api_client, key, events, content_type=BATCH)
    query = api_client.get("/api/v1/meters/pings/query", **bearer(key))

    assert [e.quantities for e in UsageEvent.objects.all()] == [{"units": "1"}] * 3
    assert query.json()["data"][0]["value"] == 3
    assert sum(r.total_amount for r in BillingRecord.objects.all()) == D("0.03")


def test_a_user_id_group_by_fills_the_events_own_user_id(api_client, key, call_meter):
    event = {"id": "c1", "type": "api_call", "subject": "acme",
             "data": {"count": 7, "user": "dana"}}  # fmt: skip

    post(api_client, key, event)
    today = timezone.now().date()
    aggregations = api_client.get(
        "/api/v1/usage/aggregations",
        {"group_by": "user", "start_date": today - timedelta(days=1),
         "end_date": today + timedelta(days=1)},
        **bearer(key),
    )  # fmt: skip

    assert UsageEvent.objects.get().user_id == "dana"
    assert [(r["user"], r["quantity"]) for r in aggregations.json()["results"]] == [("dana", "7")]


def test_an_inactive_meter_reads_no_events(api_client, key, meter):
    Meter.objects.filter(pk=meter.pk).update(is_active=False)

    response = post(api_client, key, invocation("evt-1"))

    assert error_code(response) == "unknown_event_type"


# --- meters ---------------------------------------------------------------------------------


def test_a_meter_names_only_its_products_dimensions_and_simple_paths(llm, calls):
    def meter(**fields):
        fields = {"slug": "m", "name": "M", "event_type": "t", "product": llm,
                  "value_properties": {"input_tokens": "$.in"}, **fields}  # fmt: skip
        Meter(**fields).full_clean()

    meter()
    meter(value_properties={"input_tokens": "$.usage.in", "output_tokens": "$.usage.out"},
          group_by={"agent_id": "$.agent.id"})  # fmt: skip
    meter(product=calls, value_properties={}, aggregation=Meter.Aggregation.COUNT)
    for bad in [
        {"value_properties": {"units": "$.in"}},  # not a dimension of llm
        {"value_properties": {}},  # a SUM meter reads something
        {"value_properties": {"input_tokens": "in"}},
        {"value_properties": {"input_tokens": "$..in"}},
        {"value_properties": {"input_tokens": "$.items[0]"}},
        {"value_properties": {"input_tokens": 5}},
        {"group_by": {"agent_id": "agent_id"}},
        {"group_by": {"agent id": "$.agent_id"}},
        {"group_by": {"cloudevent": "$.x"}},
        {"aggregation": Meter.Aggregation.COUNT},  # COUNT reads no values
    ]:
        with pytest.raises(ValidationError):
            meter(**bad)


def test_meters_lists_the_active_meters_in_openmeters_shape(api_client, key, meter, calls):
    Meter.objects.create(slug="retired", name="Retired", event_type="old", product=calls,
                         value_properties={"units": "$.n"}, is_active=False)  # fmt: skip

    response = api_client.get("/api/v1/meters", **bearer(key))

    assert response.status_code == 200
    assert response.json() == [
        {"id": "agent_invocation", "slug": "agent_invocation", "name": "Agent invocations",
         "description": "", "eventType": "agent_invocation", "aggregation": "SUM",
         "valueProperty": None,
         "valueProperties": {"input_tokens": "$.tokens_input", "output_tokens": "$.tokens_output"},
         "groupBy": {"agent_id": "$.agent_id", "model": "$.model"}, "productId": "llm",
         "dimensions": ["input_tokens", "output_tokens"]},
    ]  # fmt: skip


def test_the_query_sums_per_hour_window_and_group(api_client, key, meter):
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    sent = [
        ("a1", base + timedelta(minutes=5), 100, 10),
        ("a1", base + timedelta(minutes=55), 200, 20),
        ("a2", base + timedelta(minutes=30), 1000, 0),
        ("a1", base + timedelta(hours=2, minutes=1), 7, 3),
    ]
    events = [invocation(f"e{n}", agent=agent, at=at, tokens_in=i, tokens_out=o)
              for n, (agent, at, i, o) in enumerate(sent)]  # fmt: skip
    post(api_client, key, events, content_type=BATCH)

    response = api_client.get(
        QUERY,
        {"windowSize": "HOUR", "groupBy": "agent_id", "from": base.isoformat(),
         "to": (base + timedelta(hours=4)).isoformat()},
        **bearer(key),
    )  # fmt: skip

    body = response.json()
    assert response.status_code == 200, body
    assert (body["windowSize"], body["windowTimeZone"]) == ("HOUR", "UTC")
    hour = lambda h: (base + timedelta(hours=h)).isoformat().replace("+00:00", "Z")  # noqa: E731
    rows = [(r["windowStart"], r["windowEnd"], r["groupBy"], r["value"], r["values"])
            for r in body["data"]]  # fmt: skip
    assert rows == [
        (hour(0), hour(1), {"agent_id": "a1"}, 330,
         {"input_tokens": 300, "output_tokens": 30}),
        (hour(0), hour(1), {"agent_id": "a2"}, 1000,
         {"input_tokens": 1000, "output_tokens": 0}),
        (hour(2), hour(3), {"agent_id": "a1"}, 10, {"input_tokens": 7, "output_tokens": 3}),
    ]  # fmt: skip
    assert {r["subject"] for r in body["data"]} == {"acme"}
    costs = sum((D(r["cost"]) for r in body["data"]), D(0))
    assert costs == sum((r.total_amount for r in BillingRecord.objects.all()), D(0))


def test_day_windows_start_at_midnight_in_the_requested_time_zone(api_client, key, meter):
    tokyo = ZoneInfo("Asia/Tokyo")
    midnight = datetime.combine(timezone.now().astimezone(tokyo).date(), datetime.min.time(),
                                tokyo) - timedelta(days=1)  # fmt: skip
    # 23:30 and 00:30 Tokyo time: one UTC day, two Tokyo days.
    post(api_client, key, [
        invocation("e1", at=midnight - timedelta(minutes=30), tokens_in=1, tokens_out=0),
        invocation("e2", at=midnight + timedelta(minutes=30), tokens_in=2, tokens_out=0),
    ], content_type=BATCH)  # fmt: skip

    response = api_client.get(
        QUERY, {"windowSize": "DAY", "windowTimeZone": "Asia/Tokyo"}, **bearer(key)
    )

    rows = [(r["windowStart"], r["windowEnd"], r["value"]) for r in response.json()["data"]]
    assert rows == [
        ((midnight - timedelta(days=1)).isoformat(), midnight.isoformat(), 1),
        (midnight.isoformat(), (midnight + timedelta(days=1)).isoformat(), 2),
    ]


def test_the_query_filters_by_group_and_picks_one_dimension(api_client, key, meter):
    post(api_client, key, [
        invocation("e1", agent="a1", model="sonnet", tokens_in=10, tokens_out=1),
        invocation("e2", agent="a1", model="haiku", tokens_in=20, tokens_out=2),
        invocation("e3", agent="a2", model="sonnet", tokens_in=40, tokens_out=4),
    ], content_type=BATCH)  # fmt: skip

    response = api_client.get(
        f"{QUERY}?groupBy=model&filterGroupBy[agent_id]=a1&dimension=output_tokens",
        **bearer(key),
    )

    data = response.json()["data"]
    assert [(r["groupBy"], r["value"]) for r in data] == [
        ({"model": "haiku"}, 2), ({"model": "sonnet"}, 1),
    ]  # fmt: skip
    assert "values" not in data[0] and "cost" not in data[0]


def test_query_values_are_exact_decimals_written_as_json_numbers(api_client, key, calls):
    Meter.objects.create(slug="gpu", name="GPU seconds", event_type="gpu", product=calls,
                         value_properties={"units": "$.seconds"})  # fmt: skip
    amounts = ["0.100000000001", "0.200000000002", "123456789.000000000007"]
    post(api_client, key, [
        {"id": f"g{n}", "type": "gpu", "subject": "acme", "data": {"seconds": D(amount)}}
        for n, amount in enumerate(amounts)
    ], content_type=BATCH)  # fmt: skip

    response = api_client.get("/api/v1/meters/gpu/query", **bearer(key))

    assert b'"value":123456789.30000000001' in response.content
    row = json.loads(response.content, parse_float=D)["data"][0]
    assert row["value"] == sum(map(D, amounts)) == D("123456789.30000000001")
    assert row["cost"] == "1234567.893"  # each event's cost is kept to 12 places


def test_the_query_reads_only_the_keys_organisation(api_client, key, meter, plan):
    rival = OrganizationFactory(slug="rival", plan=plan)
    rival_key = issue_api_key(name="k", organization=rival).raw_key
    post(api_client, key, invocation("e1", tokens_in=5, tokens_out=0))
    post(api_client, rival_key, invocation("e1", subject="rival", tokens_in=50, tokens_out=0))

    until = {"to": timezone.now().isoformat()}
    own = api_client.get(QUERY, until, **bearer(key))
    named = api_client.get(QUERY, {**until, "subject": "acme"}, **bearer(key))
    other = api_client.get(QUERY, {**until, "subject": "rival"}, **bearer(key))

    assert [r["value"] for r in own.json()["data"]] == [5]
    assert named.json()["data"] == own.json()["data"]
    assert other.status_code == 404 and error_code(other) == "organization_not_found"


def test_a_service_key_queries_the_subject_it_names(api_client, key, meter):
    service_key = issue_api_key(name="svc", service=True).raw_key
    post(api_client, key, invocation("e1", tokens_in=5, tokens_out=1))

    named = api_client.get(QUERY, {"subject": "acme"}, **bearer(service_key))
    unnamed = api_client.get(QUERY, **bearer(service_key))

    assert [r["value"] for r in named.json()["data"]] == [6]
    assert unnamed.status_code == 400 and error_code(unnamed) == "validation_error"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"groupBy": "colour"}, "groupBy"),
        ({"filterGroupBy[colour]": "red"}, "groupBy"),
        ({"windowSize": "FORTNIGHT"}, "windowSize"),
        ({"windowTimeZone": "Mars/Olympus"}, "windowTimeZone"),
        ({"from": "last week"}, "from"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"dimension": "units"}, "dimension"),
        ({"windowTimeZone": "America"}, "windowTimeZone"),  # a directory of zones
        ({"from": "2026-02-30T00:00:00Z"}, "from"),
        ({"windowSize": "MINUTE"}, "windowSize"),  # 43,200 windows in the default 30 days
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, "from"),  # > 400 days
    ],
)
def test_bad_query_parameters_are_named(api_client, key, meter, params, field):
    response = api_client.get(QUERY, params, **bearer(key))

    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.json()["error"]["details"]["fields"]


def test_hour_windows_stay_an_hour_long_when_the_clocks_go_back(api_client, key, meter):
    """New York, 2025-11-02: 01:30 happens twice (05:30 and 06:30 UTC); each is its own
    window."""
    for n in (1, 2):
        assert post(api_client, key, invocation(f"dst-{n}", tokens_in=n)).status_code == 204
    for n, instant in ((1, "2025-11-02T05:30:00Z"), (2, "2025-11-02T06:30:00Z")):
        UsageEvent.objects.filter(idempotency_key=f"dst-{n}").update(
            occurred_at=datetime.fromisoformat(instant)
        )

    response = api_client.get(QUERY, {
        "from": "2025-11-02T04:00:00Z", "to": "2025-11-02T08:00:00Z", "windowSize": "HOUR",
        "windowTimeZone": "America/New_York", "dimension": "input_tokens",
    }, **bearer(key))  # fmt: skip

    data = response.json()["data"]
    assert [(row["windowStart"], row["windowEnd"], row["value"]) for row in data] == [
        ("2025-11-02T01:00:00-04:00", "2025-11-02T01:00:00-05:00", 1),
        ("2025-11-02T01:00:00-05:00", "2025-11-02T02:00:00-05:00", 2),
    ]


def test_a_query_without_from_reads_the_last_thirty_days(api_client, key, meter):
    assert post(api_client, key, invocation("recent")).status_code == 204
    assert post(api_client, key, invocation("old")).status_code == 204
    UsageEvent.objects.filter(idempotency_key="old").update(
        occurred_at=timezone.now() - timedelta(days=45)
    )

    body = api_client.get(QUERY, **bearer(key)).json()

    assert [row["value"] for row in body["data"]] == [110]  # the recent one's 100 + 10
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=30)


def test_an_unknown_meter_is_404(api_client, key):
    response = api_client.get("/api/v1/meters/nothing/query", **bearer(key))

    assert response.status_code == 404
    assert error_code(response) == "meter_not_found"


# --- the must-show: an OpenMeter event stream, read back three ways --------------------------


def test_an_openmeter_agent_invocation_stream_adds_up_like_the_portals_own_aggregations(
    api_client, key, meter, org
):
    """Seed 001's service sends 200 agent_invocation events (several agents, several hours,
    random token counts); the meter query grouped by agent gives exactly what the billing
    records add up to per agent and what the data sent adds up to, and its total is the
    total of usage/aggregations."""
    rng = random.Random(1)
    now = timezone.now()
    agents = ["planner", "researcher", "coder", "reviewer", "support"]
    sent = []
    for n in range(200):
        agent = rng.choice(agents)
        at = now - timedelta(minutes=rng.randint(5, 6 * 60))
        tokens_in, tokens_out = rng.randint(0, 50_000), rng.randint(0, 8_000)
        model = rng.choice(["sonnet", "haiku"])
        sent.append(invocation(f"inv-{n:03d}", agent=agent, model=model, at=at,
                               tokens_in=tokens_in, tokens_out=tokens_out))  # fmt: skip
    # As an OpenMeter client sends them: a few one by one, the rest in two batches.
    for event in sent[:20]:
        assert post(api_client, key, event).status_code == 204
    for chunk in (sent[20:110], sent[110:]):
        body = post(api_client, key, chunk, content_type=BATCH).json()
        assert body["accepted"] == len(chunk), body

    by_agent = api_client.get(QUERY, {"groupBy": "agent_id"}, **bearer(key)).json()["data"]
    hourly = api_client.get(
        QUERY, {"groupBy": ["agent_id", "model"], "windowSize": "HOUR"}, **bearer(key)
    ).json()["data"]
    today = now.date()
    aggregations = api_client.get(
        "/api/v1/usage/aggregations",
        {"group_by": "product", "start_date": today - timedelta(days=1),
         "end_date": today + timedelta(days=1)},
        **bearer(key),
    ).json()["results"]  # fmt: skip

    # 1. What the service sent, summed independently, per agent.
    expected = defaultdict(lambda: [D(0), D(0)])
    for event in sent:
        totals = expected[event["data"]["agent_id"]]
        totals[0] += event["data"]["tokens_input"]
        totals[1] += event["data"]["tokens_output"]
    queried = {r["groupBy"]["agent_id"]: r for r in by_agent}
    assert set(queried) == set(expected)
    for agent, (tokens_in, tokens_out) in expected.items():
        row = queried[agent]
        assert row["values"] == {"input_tokens": tokens_in, "output_tokens": tokens_out}
        assert row["value"] == tokens_in + tokens_out

    # 2. The billing records, grouped by the agent their event carries: quantity and cost.
    from_records = defaultdict(lambda: [D(0), D(0)])
    for record in BillingRecord.objects.filter(organization=org).select_related("event"):
        totals = from_records[record.event.usage_details["agent_id"]]
        totals[0] += record.usage_amount
        totals[1] += record.total_amount
    for agent, (quantity, cost) in from_records.items():
        assert queried[agent]["value"] == quantity
        assert D(queried[agent]["cost"]) == cost

    # 3. The portal's aggregations (the daily rollup, which groups by product, user, day,
    # not by agent): the same overall quantity and cost.
    (llm_row,) = [r for r in aggregations if r["product"] == "llm"]
    assert D(llm_row["quantity"]) == sum(r["value"] for r in by_agent)
    assert D(llm_row["cost"]) == sum(D(r["cost"]) for r in by_agent)
    assert llm_row["events"] == 200

    # Hour by hour, agent by agent, model by model, the windows add up to the same.
    assert sum(r["value"] for r in hourly) == sum(r["value"] for r in by_agent)
    for row in hourly:
        start = datetime.fromisoformat(row["windowStart"])
        in_window = [
            e
            for e in sent
            if e["data"]["agent_id"] == row["groupBy"]["agent_id"]
            and e["data"]["model"] == row["groupBy"]["model"]
            and start <= datetime.fromisoformat(e["time"]) < start + timedelta(hours=1)
        ]
        assert row["value"] == sum(
            e["data"]["tokens_input"] + e["data"]["tokens_output"] for e in in_window
        )  # fmt: skip


def test_the_demo_meter_reads_the_demo_agent_invocations(api_client):
    from apps.customers import demo as customers_demo
    from apps.pricing import demo as pricing_demo
    from apps.usage import demo as usage_demo

    plans = pricing_demo.seed_catalog()
    usage_demo.seed_meters()
    customers = customers_demo.seed_customers(plan=plans["pro"])

    accepted = usage_demo.seed_agent_invocations(customers.organization)
    response = api_client.get(QUERY, {"groupBy": "agent_id"}, **bearer(customers.organization_key))

    assert accepted == usage_demo.AGENT_INVOCATIONS
    agents = {row["groupBy"]["agent_id"] for row in response.json()["data"]}
    assert agents == {"research-agent", "support-agent", "coding-agent"}
    records = BillingRecord.objects.filter(product__code="agent-tokens")
    assert sum(r["value"] for r in response.json()["data"]) == sum(
        (r.usage_amount for r in records), D(0)
    )
