"""Cache generations: process-local memos that every process drops within a second of a
change anywhere.

A *generation* is a random token in the shared cache (Redis in production). Readers keep
what they derived from the database in memory under the generation they saw, and look the
token up at most once per ``RECHECK_SECONDS``; a writer starts a new generation now and
again once its transaction commits (a reader that cached the old rows in between, when it
could not yet see the change, is superseded by the second one). When the cache is down,
every lookup gets a fresh token: nothing is remembered, everything is read again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0


class Generation:
    def __init__(self, name: str, *, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.key = f"{name}:generation"
        self.recheck_seconds = recheck_seconds
        self._local = threading.local()

    def current(self) -> str:
        now = time.monotonic()
        memo = getattr(self._local, "memo", None)
        if memo is not None and now - memo[1] < self.recheck_seconds:
            return memo[0]
        try:
            generation = cache.get(self.key)
            if generation is None:
                cache.add(self.key, uuid.uuid4().hex, timeout=None)
                generation = cache.get(self.key)
        except Exception:
            logger.warning("Cache unavailable; %s read from the database", self.key)
            self._local.memo = None
            return uuid.uuid4().hex
        self._local.memo = (generation, now)
        return generation

    def forget_local(self) -> None:
        """Makes this thread look the generation up again at once."""
        self._local.memo = None

    def _start_new(self) -> None:
        try:
            cache.set(self.key, uuid.uuid4().hex, timeout=None)
        except Exception:
            logger.warning("Cache unavailable; %s not renewed", self.key, exc_info=True)
        self.forget_local()

    def invalidate(self) -> None:
        """Starts a new generation now and again when the current transaction commits."""
        self._start_new()
        transaction.on_commit(self._start_new)


class GenerationMemo:
    """A per-thread dict valid for one generation, bounded in size."""

    def __init__(self, generation: Generation, *, max_entries: int = 10_000) -> None:
        self.generation = generation
        self.max_entries = max_entries
        self._local = threading.local()

    def entries(self) -> dict:
        generation = self.generation.current()
        local = getattr(self._local, "memo", None)
        if local is None or local[0] != generation or len(local[1]) >= self.max_entries:
            local = self._local.memo = (generation, {})
        return local[1]
