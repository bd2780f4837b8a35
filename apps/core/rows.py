"""Unsaved model instances built without ``Model.__init__``'s per-field machinery.

Ingestion builds thousands of instances a batch (events, billing records, ledger entries)
and a dozen a single event; ``Model(**values)`` spends about 20 µs on each (descriptors,
keyword checks, signals), ``unsaved`` about a fifth of that for the same instance: every
concrete field set from ``values`` (by name, a relation given as its object, or by
attname) or from its default, and the relations' objects cached as Django caches them.
Only for models without ``pre_init``/``post_init`` receivers (the ingestion's have none).
"""

from __future__ import annotations

from functools import cache

from django.db import models
from django.db.models.base import ModelState


def _default(field: models.Field) -> tuple[object, bool]:
    """(the default, whether it is a callable to call each time), as Django gives it."""
    if field.has_default():
        return field.default, callable(field.default)
    if field.has_db_default():
        return field.get_default, True
    return field.get_default(), False  # None, or "" for a string field


@cache
def _fields(model: type[models.Model]) -> tuple:
    return tuple(
        (field.name, field.attname, field.is_relation, *_default(field))
        for field in model._meta.concrete_fields
    )


def unsaved(model: type[models.Model], **values) -> models.Model:
    instance = model.__new__(model)
    state = instance._state = ModelState()
    attributes = instance.__dict__
    for name, attname, relation, default, call in _fields(model):
        if name in values:
            value = values[name]
            if relation:
                attributes[attname] = None if value is None else value.pk
                state.fields_cache[name] = value
            else:
                attributes[attname] = value
        elif attname in values:
            attributes[attname] = values[attname]
        else:
            attributes[attname] = default() if call else default
    return instance


@cache
def _relation(model: type[models.Model], name: str) -> tuple[str, str | None]:
    """(the attname of relation ``name``, the reverse cache name of a one-to-one)."""
    field = model._meta.get_field(name)
    return field.attname, field.remote_field.cache_name if field.one_to_one else None


def link(instance: models.Model, name: str, related: models.Model) -> None:
    """``instance.<name> = related`` for a ``related`` that has its primary key, as the
    descriptor sets it (the id, the cached object, a one-to-one's reverse cache) without
    its per-call checks."""
    attname, reverse = _relation(type(instance), name)
    instance.__dict__[attname] = related.pk
    instance._state.fields_cache[name] = related
    if reverse is not None:
        related._state.fields_cache[reverse] = instance
