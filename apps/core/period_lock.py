"""The organisation's period lock: between what writes usage and what must see all of it.

Every writer of billing records or of their status changes takes the lock *shared*, first
thing in its transaction, and only then takes the stamp it writes (``stamp``). Whatever
must see every write up to an instant takes it *exclusively* (``exclusive``): PostgreSQL
grants it once every writer holding it has committed or rolled back, and writers arriving
meanwhile queue behind it. Two users:

- the close's freeze: a write stamped at or before ``frozen_at`` committed before the
  freeze was granted, and a later one is stamped after it (so it is late usage);
- a budget opened in the middle of its period: what the period already spent is summed
  once no write is in flight, and every later write sees the budget (its first query
  comes after the lock), so no event is on neither side.

The stamps and ``frozen_at`` come from the hosts' clocks (kept in step, as the rest of the
portal assumes), never from the database's. SQLite, the embedded default, has one writer
at a time: the lock is the database's own.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

# pg_advisory_xact_lock's two-key form: (this namespace, the organisation).
NAMESPACE = 0x626F6F6B  # "book"
LOCK_NOT_AVAILABLE = "55P03"


def key(organization_id: int) -> list[int]:
    # Both keys are int4; ids past 2**31 share a lock with another organisation, which
    # only ever makes one wait for the other.
    return [NAMESPACE, organization_id & 0x7FFFFFFF]


def stamp(organization_id: int) -> datetime:
    """Takes the lock shared (PostgreSQL) and returns the instant to stamp this
    transaction's records and billing events with. Call it first in the transaction that
    writes them (its later queries then see whatever held the lock exclusively)."""
    assert connection.in_atomic_block, "the period lock lives as long as a transaction"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", key(organization_id))
    return timezone.now()


def shared_statement(organization_id: int) -> tuple[str, list]:
    """The statement (SQL, parameters) that takes the lock shared, for a transaction that
    sends its first statements together (``hot_rows.short``): it must come first, and the
    stamp is taken once it has answered."""
    return "SELECT pg_advisory_xact_lock_shared(%s, %s)", key(organization_id)


class Busy(Exception):
    """Writers held the lock for longer than ``exclusive`` was willing to wait."""


def exclusive(organization_id: int, *, wait_seconds: float | None = None) -> None:
    """Takes the lock exclusively, waiting at most ``wait_seconds`` (default
    ``STATEMENT_FREEZE_WAIT_SECONDS``) for the writers holding it; raises Busy after that.
    Held until the caller's transaction ends."""
    assert connection.in_atomic_block, "the period lock lives as long as a transaction"
    if connection.vendor != "postgresql":
        return
    if wait_seconds is None:
        wait_seconds = settings.STATEMENT_FREEZE_WAIT_SECONDS
    wait_ms = int(wait_seconds * 1000)
    if wait_ms <= 0:  # (a lock_timeout of 0 would wait for ever)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", key(organization_id))
            if not cursor.fetchone()[0]:
                raise Busy
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", key(organization_id))
            cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise Busy from error
        raise
