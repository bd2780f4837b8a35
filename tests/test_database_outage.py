"""While the database cannot be reached, the API answers 503 ``service_unavailable`` with
``Retry-After`` (the Python client retries it), and logs one line per failure, not a
traceback."""

import logging

import pytest
from django.db import connection
from django.test import Client

from tests.http import error_code


@pytest.fixture
def database_down(django_db_blocker):
    """The default connection pointed at a database that is not there: a closed port on
    PostgreSQL, a file in a folder that does not exist on SQLite."""
    saved = dict(connection.settings_dict)
    with django_db_blocker.unblock():
        connection.close()
        if connection.vendor == "postgresql":
            connection.settings_dict.update(HOST="127.0.0.1", PORT="1")
        else:
            connection.settings_dict.update(NAME="/nonexistent-folder/portal.sqlite3")
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)


@pytest.mark.postgres  # an in-memory SQLite database cannot be taken away from under a test
def test_an_api_call_during_a_database_outage_is_503_with_retry_after(database_down, caplog):
    caplog.set_level(logging.WARNING, logger="billing_portal.api")
    response = Client().post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 1},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer bp_org_abcdefgh_" + "x" * 40,
    )  # fmt: skip
    assert response.status_code == 503
    assert error_code(response) == "service_unavailable"
    assert int(response["Retry-After"]) > 0
    lines = [r for r in caplog.records if r.name == "billing_portal.api"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None and "Database unavailable" in lines[0].getMessage()


def test_the_python_client_retries_a_503():
    from billing_client.errors import Unavailable
    from billing_client.retrying import is_retryable

    error = Unavailable("service_unavailable", "down", status=503)
    assert is_retryable(error, idempotent=True)
