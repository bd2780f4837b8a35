"""Set-based inserts for ingestion: COPY on PostgreSQL, bulk_create elsewhere.

Django's bulk_create on PostgreSQL sends every column as an array through UNNEST, which for
a thousand text-heavy rows costs more Python time than the database spends storing them.
COPY takes the rows as they are; their ids come from the table's sequence in the same
round trip budget (one ``nextval`` query for all of them).
"""

from __future__ import annotations

from functools import cache

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models

from apps.core import hot_rows, rows

COPY_THRESHOLD = 20  # fewer rows: one plain INSERT is as quick


@cache
def _columns(fields: tuple[models.Field, ...]) -> tuple:
    """Each field's attname and, for a JSON field, the ``encode`` of one encoder (what
    ``json.dumps(value, cls=...)`` gives, without a new encoder each time)."""
    return tuple(
        (field.attname, (field.encoder or DjangoJSONEncoder)().encode
         if isinstance(field, models.JSONField) else None)
        for field in fields
    )  # fmt: skip


def _column_values(instance: models.Model, columns: tuple) -> tuple:
    """The row of ``instance`` for ``columns`` (``_columns`` of the fields written)."""
    attributes = instance.__dict__
    return tuple(
        attributes[attname] if encode is None else encode(attributes[attname])
        for attname, encode in columns
    )


def insert(model: type[models.Model], instances: list[models.Model]) -> None:
    """Inserts ``instances`` (unsaved) and sets their primary keys."""
    if not instances:
        return
    if connection.vendor != "postgresql" or len(instances) < COPY_THRESHOLD:
        model.objects.bulk_create(instances)
        return
    meta = model._meta
    table = connection.ops.quote_name(meta.db_table)
    # The raw cursor's COPY raises psycopg's own errors: wrapped, a unique violation is
    # Django's IntegrityError, which ingestion answers by retrying (the twin is a duplicate).
    with connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(instances)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        for instance, pk in zip(instances, ids, strict=True):
            instance.pk = pk
            instance._state.adding = False
        fields = tuple(meta.concrete_fields)
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        columns_of = _columns(fields)
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for instance in instances:
                copy.write_row(_column_values(instance, columns_of))


def insert_single_event(event, record, billing_event, also: tuple[str, list] | None = None) -> None:
    """One usage event, its billing record and its first billing event in a single
    statement on PostgreSQL (one round trip instead of three), with ``also`` (SQL and
    parameters of one more data-modifying statement) in the same statement; elsewhere one
    at a time (``also`` then runs after them)."""
    if connection.vendor != "postgresql":
        event.save(force_insert=True)
        record.event = event
        record.save(force_insert=True)
        billing_event.record = record
        billing_event.save()
        if also is not None:
            with connection.cursor() as cursor:
                cursor.execute(*also)
        return
    ctes, params = _single_event_ctes(event, record, billing_event)
    parts = [f"{alias} AS ({statement})" for alias, statement in ctes]
    if also is not None:
        parts.append(f"x AS ({also[0]} RETURNING 1)")
        params.extend(also[1])
    sql = (
        "WITH " + ", ".join(parts) + " SELECT (SELECT id FROM e), (SELECT id FROM r), "
        "(SELECT id FROM b)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        _inserted(event, record, billing_event, cursor.fetchone())


def single_event_part(event, record, billing_event) -> hot_rows.Part:
    """The same three inserts as a part of a hot statement (``hot_rows``), so the event
    and the hot rows it changes are one round trip (PostgreSQL). After the hot rows, as
    the locked path inserts too: a twin of the event (same key) deciding under the locks
    holds the hot rows when it inserts the key, so neither can hold what the other waits
    for."""
    ctes, params = _single_event_ctes(event, record, billing_event, chained=True)

    def apply(ids) -> bool:
        _inserted(event, record, billing_event, ids)
        return True

    return hot_rows.Part(
        ctes, params,
        "json_build_array((SELECT id FROM e), (SELECT id FROM r), (SELECT id FROM b))", apply,
    )  # fmt: skip


def _inserted(event, record, billing_event, ids) -> None:
    event.pk, record.pk, billing_event.pk = ids
    for instance in (event, record, billing_event):
        instance._state.adding = False
    rows.link(record, "event", event)
    rows.link(billing_event, "record", record)


def _single_event_ctes(
    event, record, billing_event, *, chained: bool = False
) -> tuple[list[tuple[str, str]], list]:
    params = []
    ctes = []
    for alias, instance, link in (
        ("e", event, None),
        ("r", record, ("event_id", "e")),
        ("b", billing_event, ("record_id", "r")),
    ):
        statement, columns = _linked_insert(type(instance), link, chained and link is None)
        params += _column_values(instance, columns)
        ctes.append((alias, statement))
    return ctes, params


@cache
def _linked_insert(
    model: type[models.Model], link: tuple[str, str] | None, chained: bool = False
) -> tuple[str, tuple]:
    """The INSERT of one ``model`` row whose ``link`` column (column, CTE) is the id the
    CTE returned, and the columns (``_columns``) of its parameters, in order. ``chained``:
    its first value waits for ``{after}`` (``hot_rows``), which orders it after the part
    before it."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    given = tuple(field for field in fields if not link or field.column != link[0])
    quote = connection.ops.quote_name
    values = [f"(SELECT id FROM {link[1]})" if link and field.column == link[0] else "%s"
              for field in fields]  # fmt: skip
    if chained:
        first = fields[0]
        values[0] = f"(SELECT %s::{first.cast_db_type(connection)} WHERE {{after}})"
    statement = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" VALUES ({', '.join(values)}) RETURNING id"
    )
    return statement, _columns(given)
