"""Bad input to the API gets a JSON error with a stable code, never a 500 or an HTML page."""

import pytest

from tests.http import bearer, error_code

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls")]

ECHO = "/api/v1/probe/echo"


def test_well_formed_json_is_parsed(client):
    response = client.post(ECHO, data='{"a": 1}', content_type="application/json")

    assert response.status_code == 200
    assert response.json() == {"received": {"a": 1}}


def test_malformed_json_is_400_malformed_request(client):
    response = client.post(ECHO, data='{"a": ', content_type="application/json")

    assert response.status_code == 400
    assert error_code(response) == "malformed_request"


def test_a_form_body_is_415_unsupported_media_type(client):
    response = client.post(ECHO, data="a=1", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_a_body_over_the_limit_is_413_before_it_is_read(client, settings):
    settings.API_MAX_BODY_BYTES = 1024
    body = '{"padding": "' + "x" * 2048 + '"}'

    response = client.post(ECHO, data=body, content_type="application/json")

    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    assert response.json()["error"]["details"] == {"max_bytes": 1024}


def test_a_non_numeric_content_length_is_400(client):
    response = client.post(ECHO, data="{}", content_type="application/json", CONTENT_LENGTH="many")

    assert response.status_code == 400
    assert error_code(response) == "bad_request"


def test_an_unknown_api_url_is_a_json_404(client):
    response = client.get("/api/v1/no/such/thing")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert error_code(response) == "not_found"


def test_a_wrong_method_is_a_json_405(client, org_key):
    response = client.delete("/api/v1/info", **bearer(org_key))

    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


def test_an_unexpected_error_is_a_json_500_without_internals(client, caplog):
    response = client.get("/api/v1/probe/boom")

    assert response.status_code == 500
    assert error_code(response) == "internal_error"
    assert "secret internals" not in response.content.decode()
    assert any("secret internals" in str(record.exc_info) for record in caplog.records)


def test_an_unexpected_error_is_json_even_with_debug_on(client, settings):
    settings.DEBUG = True

    response = client.get("/api/v1/probe/boom")

    assert response.status_code == 500
    assert error_code(response) == "internal_error"


def test_a_disallowed_host_is_a_json_400(client):
    response = client.get("/api/v1/info", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert error_code(response) == "bad_request"


def test_pages_outside_the_api_keep_html_errors(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
