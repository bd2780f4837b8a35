"""Append-only rows: where money moved, rows are inserted and never changed or removed.
Corrections are new rows."""

from django.db import models


class AppendOnlyViolation(Exception):
    """Something tried to change or delete a ledger row."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyViolation(f"{self.model.__name__} rows are never updated.")

    def delete(self):
        raise AppendOnlyViolation(f"{self.model.__name__} rows are never deleted.")

    # bulk_update goes through update(); bulk_create (inserts) stays allowed.


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyViolation(f"{type(self).__name__} rows are never updated.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyViolation(f"{type(self).__name__} rows are never deleted.")
