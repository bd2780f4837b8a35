"""The lock between the close's freeze and whatever writes what a statement reads.

A statement counts the billing records (and their status changes) stamped at or before
its ``frozen_at``. For that line to hold, no write stamped at or before the freeze may
commit after the close has read: so every writer of records or billing events takes the
organisation's period lock *shared*, inside its transaction, and only then takes the stamp
it writes (``stamp``); the freeze takes the same lock *exclusively* (``freeze``), which
PostgreSQL grants once every writer holding it has committed or rolled back, and writers
arriving meanwhile queue behind it. So a write stamped at or before the freeze committed
before the freeze was granted, and one that was not yet stamped is stamped after it.

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


def key(organization_id: int) -> tuple[int, int]:
    # Both keys are int4; ids past 2**31 share a lock with another organisation, which
    # only ever makes one wait for the other.
    return NAMESPACE, organization_id & 0x7FFFFFFF


def shared_lock_sql(organization_id: int) -> tuple[str, list]:
    """The expression that takes the shared lock, for a writer to put in a query it sends
    anyway (one round trip fewer); None's place on other databases."""
    if connection.vendor != "postgresql":
        return "NULL", []
    return "pg_advisory_xact_lock_shared(%s, %s)", list(key(organization_id))


def stamp(organization_id: int) -> datetime:
    """Takes the period lock shared (PostgreSQL) and returns the instant to stamp this
    transaction's records and billing events with. Call it inside the transaction that
    writes them."""
    assert connection.in_atomic_block, "the period lock lives as long as a transaction"
    if connection.vendor == "postgresql":
        sql, params = shared_lock_sql(organization_id)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {sql}", params)
    return timezone.now()


class WritersInFlight(Exception):
    """Writers held the period lock for longer than the freeze waits."""


def freeze(organization_id: int) -> None:
    """Takes the period lock exclusively, waiting at most ``STATEMENT_FREEZE_WAIT_SECONDS``
    for the writers holding it; raises WritersInFlight after that. Call it inside the
    transaction that stamps the freeze: the lock is held until it commits."""
    assert connection.in_atomic_block, "the period lock lives as long as a transaction"
    if connection.vendor != "postgresql":
        return
    wait_ms = int(settings.STATEMENT_FREEZE_WAIT_SECONDS * 1000)
    if wait_ms <= 0:  # (a lock_timeout of 0 would wait for ever)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", list(key(organization_id)))
            if not cursor.fetchone()[0]:
                raise WritersInFlight
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(key(organization_id)))
            cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise WritersInFlight from error
        raise
