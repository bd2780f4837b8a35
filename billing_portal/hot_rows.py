"""Hot rows taken in one statement: the rows every event of an organisation meets (its
counters, budget periods, credit grants, wallet), changed at the end of a transaction by
conditional UPDATEs that each app words for its own rows (a ``Part``), chained into one
statement (PostgreSQL) so that the rows are held only from that statement to the commit.

Each part's first CTE waits for the previous part's last (a scalar subquery on it, which
PostgreSQL evaluates before the CTE runs): the rows are locked in the parts' order, the one
lock order of every writer, whatever the planner does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection


@dataclass
class Part:
    """CTEs (name, body) whose bodies may say ``{after}`` where the condition that orders
    them after the previous part goes; ``result``: the SQL expression of the value handed to
    ``apply``, which says whether what the decision relied on still holds."""

    ctes: list[tuple[str, str]]
    params: list
    result: str
    apply: Callable[[Any], bool]


def take(parts: list[Part]) -> bool:
    """Runs ``parts`` in one statement, in order; False as soon as a part's ``apply`` says
    its condition no longer held (the caller rolls the transaction back)."""
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
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return all(part.apply(value) for part, value in zip(parts, row, strict=True))
