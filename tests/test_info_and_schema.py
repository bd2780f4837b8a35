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
