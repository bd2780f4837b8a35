"""Text the database cannot store (a NUL character, a lone surrogate) anywhere a client can
put it is a 400 ``validation_error`` naming the field, never a 500; in a batch only the
event that holds it is rejected, with its index, and its siblings are recorded.

Each row of the table: where the text goes, and the field the answer must name."""

import json

import pytest

from apps.usage.models import Meter, UsageEvent
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

NUL, SURROGATE = "a\x00b", "a\ud800b"
HOSTILE = pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
EVENT = {"product_id": "calls", "usage_amount": 1}


def cloud_event(**attributes):
    return {"specversion": "1.0", "id": "ce-1", "source": "tests", "type": "calls.used",
            "subject": "acme", "data": {"units": 1}, **attributes}  # fmt: skip


def post(client, key, path, body, content_type="application/json"):
    # json.dumps escapes the surrogate (\ud800) and the NUL (\u0000), as a client would.
    return client.post(path, data=json.dumps(body), content_type=content_type, **bearer(key))


def assert_names(response, field):
    assert response.status_code == 400, response.content[:400]
    assert error_code(response) == "validation_error"
    fields = response.json()["error"]["details"]["fields"]
    assert field in fields, fields


def assert_rejected(result, index, field):
    assert result["index"] == index and result["status"] == "rejected", result
    assert result["error"]["code"] == "validation_error", result
    assert field in result["error"]["details"]["fields"], result


# --- usage/record ---------------------------------------------------------------------------

RECORD_FIELDS = [
    (lambda bad: {"event_id": bad}, "event_id"),
    (lambda bad: {"user_id": bad}, "user_id"),
    (lambda bad: {"product_id": bad}, "product_id"),
    (lambda bad: {"session_id": bad}, "session_id"),
    (lambda bad: {"service_type": bad}, "service_type"),
    (lambda bad: {"billing_method": bad}, "billing_method"),
    (lambda bad: {"occurred_at": bad}, "occurred_at"),
    (lambda bad: {"organization_id": bad}, "organization_id"),
    (lambda bad: {"usage_details": {"model": bad}}, "usage_details.model"),
    (lambda bad: {"usage_details": {"tags": ["ok", bad]}}, "usage_details.tags[1]"),
    (lambda bad: {"usage_details": {"deep": {"er": bad}}}, "usage_details.deep.er"),
    (lambda bad: {"usage_details": {bad: 1}}, "usage_details.a\ufffdb"),
    (lambda bad: {"dimensions": {bad: 1}}, "dimensions.a\ufffdb"),
]


@HOSTILE
@pytest.mark.parametrize(("put", "field"), RECORD_FIELDS)
def test_usage_record_names_the_field_holding_unstorable_text(client, key, calls, bad, put, field):
    response = post(client, key, "/api/v1/usage/record", {**EVENT, **put(bad)})
    assert_names(response, field)
    assert not UsageEvent.objects.exists()


@HOSTILE
def test_an_idempotency_key_header_of_unstorable_text_is_named(client, key, calls, bad):
    if bad == SURROGATE:
        bad = "a\udcffb"  # what a header decoded with surrogateescape would hold
    response = client.post(
        "/api/v1/usage/record", data=json.dumps(EVENT), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=bad, **bearer(key),
    )  # fmt: skip
    assert_names(response, "Idempotency-Key")


# --- usage/batch: one bad event, its siblings recorded ------------------------------------


@HOSTILE
@pytest.mark.parametrize(("put", "field"), RECORD_FIELDS)
def test_a_batch_rejects_only_the_event_holding_unstorable_text(
    client, key, calls, bad, put, field
):
    events = [{**EVENT, "event_id": "good-0"}, {**EVENT, "event_id": "bad", **put(bad)},
              {**EVENT, "event_id": "good-2"}]  # fmt: skip
    response = post(client, key, "/api/v1/usage/batch", {"events": events})
    assert response.status_code == 200, response.content[:400]
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    assert_rejected(body["results"][1], 1, field)
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == {"good-0", "good-2"}


@HOSTILE
def test_a_batchs_own_organization_of_unstorable_text_is_named(client, key, calls, bad):
    response = post(client, key, "/api/v1/usage/batch", {"organization_id": bad, "events": [EVENT]})
    assert_names(response, "organization_id")
    assert not UsageEvent.objects.exists()


# --- events (CloudEvents) ----------------------------------------------------------------

CLOUD_FIELDS = [
    (lambda bad: {"id": bad}, "id"),
    (lambda bad: {"type": bad}, "type"),
    (lambda bad: {"source": bad}, "source"),
    (lambda bad: {"subject": bad}, "subject"),
    (lambda bad: {"time": bad}, "time"),
    (lambda bad: {"data": {"units": 1, "model": bad}}, "data.model"),
    (lambda bad: {"data": {bad: 1}}, "data.a\ufffdb"),
]


@pytest.fixture
def meter(calls):
    return Meter.objects.create(slug="calls_used", name="Calls", event_type="calls.used",
                                product=calls, value_properties={"units": "$.units"})  # fmt: skip


@HOSTILE
@pytest.mark.parametrize(("put", "field"), CLOUD_FIELDS)
def test_one_cloud_event_names_the_field_holding_unstorable_text(
    client, key, meter, bad, put, field
):
    response = post(client, key, "/api/v1/events", cloud_event(**put(bad)),
                    "application/cloudevents+json")  # fmt: skip
    assert_names(response, field)
    assert not UsageEvent.objects.exists()


@HOSTILE
@pytest.mark.parametrize(("put", "field"), CLOUD_FIELDS)
def test_a_cloud_event_batch_rejects_only_the_event_holding_it(client, key, meter, bad, put, field):
    events = [cloud_event(id="ce-0"), cloud_event(**{"id": "ce-bad", **put(bad)}),
              cloud_event(id="ce-2")]  # fmt: skip
    response = post(client, key, "/api/v1/events", events, "application/cloudevents-batch+json")
    assert response.status_code == 200, response.content[:400]
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert_rejected(results[1], 1, field)
    assert UsageEvent.objects.count() == 2


# --- every other body ------------------------------------------------------------------------

BODIES = [
    ("post", "/api/v1/budgets", {"name": "{bad}", "limit": "5", "period": "monthly"}, "name"),
    ("post", "/api/v1/budgets", {"name": "cap", "limit": "5", "period": "{bad}"}, "period"),
    (
        "post",
        "/api/v1/budgets",
        {"name": "cap", "limit": "5", "period": "monthly", "scope": "user", "user_id": "{bad}"},
        "user_id",
    ),
    ("post", "/api/v1/budgets", {"name": "cap", "limit": "{bad}", "period": "monthly"}, "limit"),
    ("post", "/api/v1/billing/calculate", {"product_id": "{bad}", "usage_amount": 1}, "product_id"),
    (
        "post",
        "/api/v1/billing/calculate",
        {"product_id": "calls", "usage_amount": "{bad}"},
        "usage_amount",
    ),
    (
        "post",
        "/api/v1/pricing/estimate",
        {"items": [{"product_id": "{bad}", "usage_amount": 1}]},
        "items[0].product_id",
    ),
    (
        "post",
        "/api/v1/billing/process",
        {"billing_id": "{bad}", "billing_method": "wallet_deduction"},
        "billing_id",
    ),
    ("post", "/api/v1/billing/refund", {"billing_id": "{bad}", "reason": "x"}, "billing_id"),
    ("post", "/api/v1/billing/refund", {"billing_id": "bill_x", "reason": "{bad}"}, "reason"),
    ("post", "/api/v1/quota/check", {"product_id": "{bad}"}, "product_id"),
    ("post", "/api/v1/budgets/check", {"estimated_cost": "1", "user_id": "{bad}"}, "user_id"),
]


def fill(body, bad):
    return json.loads(json.dumps(body).replace("{bad}", json.dumps(bad)[1:-1]))


@HOSTILE
@pytest.mark.parametrize(("method", "path", "body", "field"), BODIES)
def test_every_body_names_the_field_holding_unstorable_text(
    client, key, calls, bad, method, path, body, field
):
    assert_names(post(client, key, path, fill(body, bad)), field)


@HOSTILE
def test_a_budget_update_names_the_field_holding_unstorable_text(api_client, key, calls, bad):
    created = api_client.post("/api/v1/budgets", {"name": "cap", "limit": "5", "period": "monthly"},
                              format="json", **bearer(key))  # fmt: skip
    assert created.status_code == 201, created.content
    path = f"/api/v1/budgets/{created.json()['id']}"
    for method in ("put", "patch"):
        response = getattr(api_client, method)(
            path, json.dumps({"name": bad, "limit": "5", "period": "monthly"}),
            content_type="application/json", **bearer(key),
        )  # fmt: skip
        assert_names(response, "name")


# --- the address: path segments, query strings, headers ---------------------------------------

PATHS = [
    ("/api/v1/billing/records/user/a%00b", "user_id"),
    ("/api/v1/pricing/products/a%00b", "code"),
    ("/api/v1/meters/a%00b/query", "path"),
    ("/api/v1/no-such/a%00b", "path"),
]


@pytest.mark.parametrize(("path", "field"), PATHS)
def test_a_nul_in_a_path_segment_is_named(client, key, calls, path, field):
    assert_names(client.get(path, **bearer(key)), field)


QUERIES = [
    ("/api/v1/billing/records", "user_id"),
    ("/api/v1/billing/records", "product_id"),
    ("/api/v1/billing/records", "status"),
    ("/api/v1/stats", "start_date"),
    ("/api/v1/usage/top-consumers", "product_id"),
    ("/api/v1/usage/aggregations", "group_by"),
    ("/api/v1/usage/trends", "period"),
    ("/api/v1/billing/statements", "cursor"),
    ("/api/v1/budgets", "organization_id"),
    ("/api/v1/budgets/violations", "organization_id"),
    ("/api/v1/pricing/products", "service_type"),
    ("/api/v1/wallet", "organization_id"),
]


@pytest.mark.parametrize(("path", "name"), QUERIES)
def test_a_nul_in_a_query_parameter_is_named(client, key, calls, path, name):
    assert_names(client.get(f"{path}?{name}=a%00b", **bearer(key)), name)


def test_a_nul_in_a_query_parameters_name_is_refused(client, key, calls):
    assert_names(client.get("/api/v1/billing/records?a%00b=1", **bearer(key)), "a\ufffdb")


def test_a_nul_in_the_authorization_header_is_refused_not_looked_up(client, calls):
    response = client.get("/api/v1/wallet", HTTP_AUTHORIZATION="Bearer bp_\x00x")
    assert_names(response, "Authorization")


def test_a_page_address_holding_a_nul_is_a_plain_400(client, calls):
    response = client.get("/billing/records?user=a%00b")
    assert response.status_code == 400
    response = client.get("/admin/usage/billingrecord/?q=a%00b")
    assert response.status_code == 400
