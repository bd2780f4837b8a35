"""Per-API-key request and error counts for staff: one Redis hash per hour, kept for a
week. The throttle sends a request's count with its own round trip (``queue_key_counts``);
the request monitoring counts the rest (``count_key_request``); the admin reads them
(``key_requests``). A cache that is down loses counts, never an answer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("billing_portal.requests")

# Per-key counts: one hash per hour, kept for a week.
KEY_STATS_TTL = 8 * 24 * 3600


def _hour_key(at: datetime) -> str:
    return f"apikey-requests:{at:%Y%m%d%H}"


def count_key_request(key_id: int, *, error: bool, request: bool = True) -> None:
    """Adds the request (and, with ``error``, an error) to its key's hourly counts: one
    round trip on Redis; a cache that is down loses counts, never an answer."""
    hour = _hour_key(datetime.now(UTC))
    fields = ([f"{key_id}:r"] if request else []) + ([f"{key_id}:e"] if error else [])
    try:
        backend = caches[DEFAULT_CACHE_ALIAS]
        if isinstance(backend, RedisCache):
            client = backend._cache.get_client(None, write=True)
            with client.pipeline(transaction=False) as pipe:
                queue_key_counts(pipe, backend, fields)
                pipe.execute()
            return
        counts = cache.get(hour) or {}
        for name in fields:
            counts[name] = counts.get(name, 0) + 1
        cache.set(hour, counts, KEY_STATS_TTL)
    except Exception:  # noqa: BLE001
        logger.warning("Could not count an API key's request", exc_info=True)


def queue_key_counts(pipe, backend: RedisCache, fields: list[str]) -> None:
    """Queues on ``pipe`` (a pipeline of ``backend``'s write client) what adds one to each
    of ``fields`` of this hour's per-key counts; the throttle sends it with its own
    commands, so that a request is counted without a round trip of its own."""
    full_key = backend.make_and_validate_key(_hour_key(datetime.now(UTC)))
    for name in fields:
        pipe.hincrby(full_key, name, 1)
    pipe.expire(full_key, KEY_STATS_TTL)


def key_requests(key_ids: list[int], *, hours: int = 24) -> dict[int, tuple[int, int]]:
    """(requests, errors) of each key over the last ``hours`` hours."""
    now = datetime.now(UTC)
    names = [_hour_key(now - timedelta(hours=h)) for h in range(hours)]
    totals = {key_id: [0, 0] for key_id in key_ids}
    if not key_ids:
        return {}
    try:
        backend = caches[DEFAULT_CACHE_ALIAS]
        if isinstance(backend, RedisCache):
            full = [backend.make_and_validate_key(name) for name in names]
            client = backend._cache.get_client(full[0])
            fields = [f"{k}:{kind}" for k in key_ids for kind in ("r", "e")]
            with client.pipeline(transaction=False) as pipe:
                for key in full:
                    pipe.hmget(key, fields)
                rows = pipe.execute()
            for values in rows:
                for name, value in zip(fields, values, strict=True):
                    if value is not None:
                        key_id, kind = name.split(":")
                        totals[int(key_id)][kind == "e"] += int(value)
        else:
            for counts in cache.get_many(names).values():
                for key_id in key_ids:
                    totals[key_id][0] += counts.get(f"{key_id}:r", 0)
                    totals[key_id][1] += counts.get(f"{key_id}:e", 0)
    except Exception:  # noqa: BLE001
        logger.warning("Could not read API key request counts", exc_info=True)
    return {key_id: (r, e) for key_id, (r, e) in totals.items()}
