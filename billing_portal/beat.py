"""celery-beat's scheduler: django-celery-beat's DatabaseScheduler, stamping a heartbeat in
the cache at most every ``INTERVAL`` seconds as it ticks, so the health report and the
metrics can tell how long ago beat was last alive."""

from __future__ import annotations

import logging
import time

from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "celery-beat:heartbeat"
INTERVAL = 10


def stamp() -> None:
    from django.core.cache import cache

    cache.set(HEARTBEAT_KEY, time.time(), None)


def age() -> float | None:
    """Seconds since beat's last heartbeat; None when it was never seen."""
    from django.core.cache import cache

    stamped = cache.get(HEARTBEAT_KEY)
    return None if stamped is None else max(0.0, time.time() - float(stamped))


class HeartbeatScheduler(DatabaseScheduler):
    _stamped = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._stamped >= INTERVAL:
            try:
                stamp()
                self._stamped = now
            except Exception:  # noqa: BLE001 - the cache is down: beat goes on
                logger.warning("Could not stamp beat's heartbeat", exc_info=True)
        return super().tick(*args, **kwargs)
