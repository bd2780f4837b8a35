"""Hostile input to the ingestion and read endpoints is a 4xx JSON error with a stable code,
never a 500: nesting deeper than any parser follows, and dates at the calendar's edges."""

import pytest

from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

DEEP = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"usage_details": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"


@pytest.mark.parametrize(
    ("path", "text", "content_type"),
    [
        ("/api/v1/usage/record", DEEP, "application/json"),
        ("/api/v1/usage/record", DEEP_OBJECT, "application/json"),
        ("/api/v1/usage/batch", '{"events": ' + DEEP + "}", "application/json"),
        ("/api/v1/events", DEEP_OBJECT, "application/cloudevents+json"),
        ("/api/v1/events", DEEP, "application/cloudevents-batch+json"),
        ("/api/v1/billing/calculate", DEEP_OBJECT, "application/json"),
        ("/api/v1/budgets", DEEP_OBJECT, "application/json"),
    ],
)
def test_json_nested_five_thousand_deep_is_a_malformed_request(
    client, key, calls, path, text, content_type
):
    response = client.post(path, data=text, content_type=content_type, **bearer(key))
    assert response.status_code == 400, response.content[:300]
    assert error_code(response) == "malformed_request"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/stats", "/api/v1/billing/records", "/api/v1/usage/top-consumers",
     "/api/v1/usage/aggregations"],
)  # fmt: skip
@pytest.mark.parametrize(
    "query",
    [{"end_date": "0001-01-02"}, {"end_date": "9999-12-31"}, {"start_date": "0001-01-01"},
     {"start_date": "9999-12-30", "end_date": "9999-12-31"}],
)  # fmt: skip
def test_a_date_at_the_calendars_edge_is_a_validation_error_naming_it(
    client, key, calls, path, query
):
    response = client.get(path, query, **bearer(key))
    assert response.status_code == 400, response.content[:300]
    assert error_code(response) == "validation_error"
    assert set(query) & set(response.json()["error"]["details"]["fields"])


def test_the_range_still_reads_real_dates(client, key, calls):
    response = client.get(
        "/api/v1/stats", {"start_date": "2026-11-01", "end_date": "2026-11-30"}, **bearer(key)
    )
    assert response.status_code == 200


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_an_instant_at_the_calendars_edge_is_a_validation_error_naming_it(client, key, calls, at):
    response = client.post(
        "/api/v1/billing/calculate", {"product_id": "calls", "usage_amount": 1, "at": at},
        content_type="application/json", **bearer(key),
    )  # fmt: skip
    assert response.status_code == 400, response.content[:300]
    assert error_code(response) == "validation_error"
    assert "at" in response.json()["error"]["details"]["fields"]
