"""The hot path's prepared statements: each shape is prepared once per database session and
then executed by name; a round trip that failed never leaves a name half-known; a new
connection starts over."""

import pytest
from django.db import DataError, connection, transaction

from apps.core import prepared

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

SQL = "SELECT %s::numeric + 1, %s::text || '%%'"


@pytest.fixture
def sql(request) -> str:
    """A shape of the test's own (the session, and what it prepared, outlives a test)."""
    return f"{SQL} /* {request.node.name} */"


def run(statement: prepared.Statement):
    with connection.cursor() as cursor:
        return statement.run(cursor)


def session_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def test_a_shape_is_prepared_once_then_executed_by_name(sql):
    first = prepared.statement(sql, [1, "a"])
    assert first.sql.startswith("PREPARE billing_hot_") and first.count == 2
    assert tuple(run(first)) == (2, "a%")
    name = first.sql.split()[1]

    again = prepared.statement(sql, [41, "b"])
    assert again.sql == f"EXECUTE {name}(%s, %s)" and again.count == 1
    assert tuple(run(again)) == (42, "b%")
    assert name in session_statements()


def test_a_failed_round_trip_prepares_under_a_new_name_next_time(sql):
    failing = prepared.statement(sql, ["not a number", "x"])
    with pytest.raises(DataError), transaction.atomic():
        run(failing)
    # The PREPARE ran, the EXECUTE failed: the name is not reused, so no "already exists".
    retried = prepared.statement(sql, [1, "y"])
    assert retried.sql.startswith("PREPARE") and retried.sql.split()[1] != failing.sql.split()[1]
    assert tuple(run(retried)) == (2, "y%")


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_prepares_again(sql):
    run(prepared.statement(sql, [1, "a"]))
    connection.close()
    fresh = prepared.statement(sql, [2, "b"])
    assert fresh.sql.startswith("PREPARE")
    assert tuple(run(fresh)) == (3, "b%")


def test_shapes_past_the_limit_are_sent_as_they_are(sql, monkeypatch):
    run(prepared.statement(sql, [1, "a"]))
    monkeypatch.setattr(prepared, "MAX_PER_CONNECTION", len(prepared._names()[1]))
    other = prepared.statement("SELECT %s::int * 2", [21])
    assert other.sql == "SELECT %s::int * 2" and tuple(run(other)) == (42,)
