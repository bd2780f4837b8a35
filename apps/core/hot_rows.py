"""Hot rows taken in one statement: the rows every event of an organisation meets (its
counters, budget periods, credit grants, wallet), changed at the end of a transaction by
conditional UPDATEs that each app words for its own rows (a ``Part``), chained into one
statement (PostgreSQL) so that the rows are held only from that statement to the commit.

Each part's first CTE waits for the previous part's last (a scalar subquery on it, which
PostgreSQL evaluates before the CTE runs): the rows are locked in the parts' order, the one
lock order of every writer, whatever the planner does.

A transaction of the hot path can also be sent in fewer round trips (``short``): its BEGIN
goes with its first statements, and its end is one COMMIT, where Django's ``atomic`` would
send BEGIN, then each statement, then COMMIT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from apps.core import prepared

logger = logging.getLogger(__name__)


@dataclass
class Part:
    """CTEs (name, body) whose bodies may say ``{after}`` where the condition that orders
    them after the previous part goes; ``result``: the SQL expression of the value handed to
    ``apply``, which says whether what the decision relied on still holds."""

    ctes: list[tuple[str, str]]
    params: list
    result: str
    apply: Callable[[Any], bool]


def take(parts: list[Part], *, prepare: bool = False, cursor=None) -> bool:
    """Runs ``parts`` in one statement, in order; False as soon as a part's ``apply`` says
    its condition no longer held (the caller rolls the transaction back). With
    ``prepare``, the statement's shape is prepared once per connection (``prepared``):
    for shapes that recur, such as a single event's. ``cursor``: one to send it on (a
    ``short`` transaction's), else a new one."""
    parts = [part for part in parts if part.ctes]
    if not parts:
        return True
    ctes, params, previous = [], [], None
    for part in parts:
        for name, body in part.ctes:
            after = f"(SELECT count(*) FROM {previous}) >= 0" if previous else "TRUE"
            ctes.append(f"{name} AS ({body.replace('{after}', after)})")
            previous = name
        params += part.params
    sql = "WITH " + ", ".join(ctes) + " SELECT " + ", ".join(part.result for part in parts)
    statement = prepared.statement(sql, params) if prepare else prepared.Statement(sql, params, 1)
    if cursor is not None:
        row = statement.run(cursor)
    else:
        with connection.cursor() as cursor:
            row = statement.run(cursor)
    return all(part.apply(value) for part, value in zip(parts, row, strict=True))


def can_be_short() -> bool:
    """Whether ``short`` can run here: PostgreSQL, outside any ``atomic`` block."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
    )


@dataclass
class Short:
    """A transaction opened by ``short``; ``on_commit`` callbacks run once it committed.
    Its statements share one cursor (``cursor``, once begun)."""

    begun: bool = False
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    cursor: Any = None

    def begin(self, statements: list[prepared.Statement]) -> tuple:
        """BEGIN and ``statements`` in one round trip; the row of the last one. Each
        statement sees what committed before it started (READ COMMITTED), so a lock taken
        by one is held before the next one reads."""
        assert not self.begun
        sql = "; ".join(["BEGIN", *(statement.sql for statement in statements)])
        params = [param for statement in statements for param in statement.params]
        cursor = self.cursor = connection.cursor()
        self.begun = True
        cursor.execute(sql, params)
        for _ in range(sum(statement.count for statement in statements)):
            cursor.nextset()
        row = cursor.fetchone()
        for statement in statements:
            statement.ran()
        return row

    def on_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)


@contextmanager
def short() -> Iterator[Short]:
    """A transaction in as few round trips as it has statements, plus its COMMIT (see
    ``can_be_short``). Only raw statements may run in it: Django's ``atomic`` refuses to
    start inside it (psycopg cannot change autocommit mid-transaction), so an ORM write
    that would need one fails loudly instead of committing early. Any exception rolls it
    back."""
    transaction = Short()
    try:
        yield transaction
    except BaseException:
        if transaction.begun:
            try:
                with transaction.cursor as cursor:
                    cursor.execute("ROLLBACK")
            except Exception:  # the connection is gone: so is the transaction
                logger.warning("Could not roll back; closing the connection", exc_info=True)
                connection.close()
        raise
    if transaction.begun:
        with transaction.cursor as cursor:
            cursor.execute("COMMIT")
        for callback in transaction.callbacks:
            callback()
