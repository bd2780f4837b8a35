"""Per-key request throttling, a fixed window counter in the cache (Redis in production).

On Redis, one round trip per request: a pipeline of ``SET key 0 EX window NX`` (starts
the window) and ``INCR key``. On other caches, ``incr`` with ``add`` once per window. When
the cache is down the throttle lets requests through: it protects capacity, it never decides money —
deduplication and enforcement live in the database.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from apps.customers import key_stats

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """'6000/min' -> (6000, 60); None or '' -> no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.rate = parse_rate(settings.API_THROTTLE_RATE)
        self._wait = 0.0

    def allow_request(self, request, view) -> bool:
        api_key = getattr(request, "auth", None)
        if self.rate is None or api_key is None:
            return True
        limit, window = self.rate
        now = time.time()
        window_index = int(now // window)
        key = f"throttle:{api_key.prefix}:{window}:{window_index}"
        try:
            count = _count(key, window + 1, request=request, key_id=api_key.pk)
        except Exception:  # the cache is down: do not turn that into refusals
            logger.warning("Throttle cache unavailable; request let through", exc_info=True)
            return True
        if count > limit:
            self._wait = (window_index + 1) * window - now
            return False
        return True

    def wait(self) -> float:
        return max(self._wait, 1.0)


def _count(key: str, timeout: int, *, request=None, key_id: int | None = None) -> int:
    """Adds one to the window's counter and returns it. On Redis the same round trip adds
    the request to its key's hourly counts (``key_stats``), which then need none."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        client = backend._cache.get_client(full_key, write=True)
        with client.pipeline(transaction=False) as pipe:
            pipe.set(full_key, 0, ex=timeout, nx=True)
            pipe.incr(full_key)
            if request is not None and key_id is not None:
                key_stats.queue_key_counts(pipe, backend, [f"{key_id}:r"])
            count = int(pipe.execute()[1])
        if request is not None and key_id is not None:
            request._request.key_request_counted = True
        return count
    try:
        return cache.incr(key)
    except ValueError:
        return 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)
