"""Logging: every line carries the request id of the request (or the Celery task it
enqueued) it belongs to, and secrets are masked before any handler sees them.

Production writes one JSON object per line (python-json-logger); development writes text.
What is masked: the portal's API keys (``bp_org_…``/``bp_svc_…`` with their secret part),
Stripe secret, restricted and webhook-signing keys, bearer tokens, and anything shaped
like a card number (13-19 digits passing the Luhn check)."""

from __future__ import annotations

import logging
import re

from apps.core import request_id

MASK = "[redacted]"
_SECRETS = [
    # Our keys: the public prefix may stay (it is shown in the admin), the secret never.
    (re.compile(r"\b(bp_(?:org|svc)_[A-Za-z0-9]{8})_[A-Za-z0-9]{40}\b"), r"\1_" + MASK),
    (re.compile(r"\b((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]{8,}"), r"\1" + MASK),
    (re.compile(r"\b(whsec_)[A-Za-z0-9+/=]{8,}"), r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{12,}"), r"\1" + MASK),
]
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w])")  # digits not inside a word or id


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return MASK if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _CARD.sub(_card, text)


def leaks(text: str) -> list[str]:
    """The lines of ``text`` holding a secret ``redact`` would have masked (a check of
    written logs)."""
    return [line for line in text.splitlines() if redact(line) != line]


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.current()
        return True


class RedactFilter(logging.Filter):
    """Masks secrets in the message (with its arguments) and in a traceback's text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def config(*, json: bool, level: str) -> dict:
    """The ``LOGGING`` setting."""
    formatter = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if json
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "apps.core.logs.RequestIdFilter"},
            "redact": {"()": "apps.core.logs.RedactFilter"},
        },
        "formatters": {"main": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": ["request_id", "redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "stripe": {"level": "WARNING"},
        },
    }
