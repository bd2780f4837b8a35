"""Named prepared statements (PostgreSQL) for the few statement shapes of the hot path.

Django's PostgreSQL cursor binds parameters on the client, so every statement is parsed and
planned anew; a single event's snapshot and hot statement are a dozen subqueries and CTEs,
and their planning costs the database about as much as running them. ``statement`` turns
one into ``EXECUTE`` of a statement prepared on this connection (SQL-level ``PREPARE``,
sent in the same round trip the first time), so that PostgreSQL parses and plans each
shape once per connection and reuses its plan.

A name is remembered only once its statement ran: a round trip that failed may or may not
have prepared it, so the next one prepares under a new name. Prepared statements last as
long as the database session (not undone by ROLLBACK): this needs a connection of its own
(direct, or a pooler in session mode), as Django's persistent connections are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection
from psycopg import _queries

MAX_PER_CONNECTION = 100  # shapes beyond it are sent as they are

# psycopg remembers how it bound a statement's placeholders only for statements of up to
# 50 parameters; a single event's hot statement has about 60, in a few shapes that recur
# (its EXECUTE too): binding them anew each time costs more than the rest of its Python.
_queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, 200)
PLACEHOLDER = re.compile(r"%%|%s")


@dataclass
class Statement:
    """What to send for one statement: ``sql`` holds ``count`` statements (PREPARE and
    EXECUTE the first time, EXECUTE after); call ``ran`` once it has run."""

    sql: str
    params: list
    count: int
    _prepared: tuple[dict, str, str] | None = None  # (the connection's names, sql, name)

    def run(self, cursor) -> tuple | None:
        """Sends it on ``cursor``; the row of its last statement (the EXECUTE)."""
        cursor.execute(self.sql, self.params)
        for _ in range(self.count - 1):
            cursor.nextset()
        row = cursor.fetchone()
        self.ran()
        return row

    def ran(self) -> None:
        if self._prepared is not None:
            names, sql, name = self._prepared
            names[sql] = name


def _names() -> dict:
    """The statements prepared on the current database session (by SQL)."""
    connection.ensure_connection()
    raw = connection.connection
    held = getattr(connection, "_prepared_statements", None)
    if held is None or held[0] is not raw:
        held = connection._prepared_statements = (raw, {}, [0])
    return held


def statement(sql: str, params: list) -> Statement:
    """``sql`` (``%s`` placeholders, ``%%`` for a percent sign) as a prepared statement's
    EXECUTE on PostgreSQL; as it is elsewhere."""
    if connection.vendor != "postgresql":
        return Statement(sql, params, 1)
    raw, names, counter = _names()
    arguments = "(" + ", ".join(["%s"] * len(params)) + ")" if params else ""
    name = names.get(sql)
    if name is not None:
        return Statement(f"EXECUTE {name}{arguments}", params, 1)
    if len(names) >= MAX_PER_CONNECTION:
        return Statement(sql, params, 1)
    counter[0] += 1
    name = f"billing_hot_{counter[0]}"
    numbers = iter(range(1, len(params) + 1))
    body = PLACEHOLDER.sub(lambda m: "%%" if m.group() == "%%" else f"${next(numbers)}", sql)
    return Statement(
        f"PREPARE {name} AS {body}; EXECUTE {name}{arguments}", params, 2, (names, sql, name)
    )
