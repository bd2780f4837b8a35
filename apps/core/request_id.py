"""The request id: taken from ``X-Request-ID`` (when it is a sane token) or generated, kept
in a context variable for the request's log lines, and carried to the Celery tasks the
request enqueues in their message headers."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-ID"
TASK_HEADER = "request_id"
NONE = "-"

_current: ContextVar[str] = ContextVar("request_id", default=NONE)
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current() -> str:
    return _current.get()


def accept(value: str | None) -> str:
    """The client's id when it is a token of at most 128 safe characters, else a new one."""
    if value and _SANE.match(value):
        return value
    return uuid.uuid4().hex


def bind(value: str):
    """Makes ``value`` the current id; returns the token to ``reset`` with."""
    return _current.set(value)


def reset(token) -> None:
    _current.reset(token)
