from io import StringIO

import pytest
from django.core.management import call_command

from tests.http import bearer

pytestmark = pytest.mark.django_db


def test_info_describes_the_service_and_the_caller(api_client, service_key):
    response = api_client.get("/api/v1/info", **bearer(service_key))

    assert response.status_code == 200
    body = response.json()
    assert body["service"] == "billing_portal"
    assert body["api_version"] == "v1"
    assert body["caller"]["key_kind"] == "service"
    assert body["caller"]["organization_id"] is None
    assert body["documentation"]["openapi"].endswith("/api/schema/")


def test_the_openapi_schema_generates_without_warnings_and_validates():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)

    schema = out.getvalue()
    assert "/api/v1/info:" in schema
    assert "/api/v1/organization:" in schema


def test_schema_and_docs_pages_are_served_without_a_key(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    assert b"openapi: 3" in schema.content
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    # Swagger UI is served by the portal itself, never from a CDN.
    assert b"cdn." not in docs.content


def served_schema(client) -> dict:
    return client.get("/api/schema/?format=json").json()


def test_every_operation_documents_its_error_answers_in_the_one_error_shape(client):
    schema = served_schema(client)
    error = {"$ref": "#/components/schemas/Error"}

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
            assert {"400", "401", "406", "503"} <= set(errors), (method, path)
            for status, response in errors.items():
                assert response["content"]["application/json"]["schema"] == error
                assert "Codes: `" in response["description"], (method, path, status)
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == [
        "code", "details", "message"
    ]  # fmt: skip


def test_each_operation_documents_the_refusals_it_can_give(client):
    paths = served_schema(client)["paths"]

    def statuses(path, method):
        return {status for status in paths[path][method]["responses"] if int(status) >= 400}

    record = statuses("/api/v1/usage/record", "post")
    assert {"402", "404", "409", "413", "415", "422", "429"} <= record
    assert (
        "budget_exceeded"
        in paths["/api/v1/usage/record"]["post"]["responses"]["402"]["description"]
    )
    # No body, no throttle, no scope: none of their refusals.
    assert statuses("/api/v1/info", "get") == {"400", "401", "406", "503"}
    assert {"413", "415", "429"}.isdisjoint(statuses("/api/v1/wallet", "get"))
    # A batch answers each event's refusal inside its 200.
    assert {"402", "409"}.isdisjoint(statuses("/api/v1/usage/batch", "post"))
    assert "404" in statuses("/api/v1/billing/statements/{statement_id}", "get")


def test_the_statements_list_is_documented_as_the_cursor_page_it_answers(client):
    schema = served_schema(client)
    operation = schema["paths"]["/api/v1/billing/statements"]["get"]
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][page["$ref"].rsplit("/", 1)[1]]

    assert set(component["required"]) == {"next", "previous", "results"}
    assert component["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Statement"}
    assert {"cursor", "limit", "organization_id"} <= {p["name"] for p in operation["parameters"]}
