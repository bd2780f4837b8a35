"""What a ``UsageTracker`` holds until the portal answers for it, and what became of the
rest: the bounded queue, the full-queue policy, the backoff after a failure, the counts.

The counts add up at every moment: ``tracked == flushed + failed + pending + dropped``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from billing_client.errors import BillingError
from billing_client.retrying import RetryPolicy

ON_FULL = ("drop_oldest", "block", "raise")
COUNTS = ("tracked", "flushed", "duplicates", "failed", "retried", "dropped", "batches")


class TrackerFull(Exception):
    """The tracker holds ``max_pending`` events and its policy refuses another."""


class PendingEvent:
    """An event the tracker holds until the portal answers for it."""

    __slots__ = ("attempts", "event", "first_server_error_at", "queued_at", "server_errors")

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.attempts = 0
        self.queued_at = time.monotonic()
        # The requests holding it that the portal answered 500 (it failed on them), and
        # when the first was: what tells a poison event from a portal that is down.
        self.server_errors = 0
        self.first_server_error_at: float | None = None

    @property
    def key(self) -> str:
        return self.event["event_id"]


class PendingQueue:
    """Events queued or in flight, at most ``max_pending``, oldest first.

    ``lock`` guards everything here; the tracker's background thread waits on ``wake``
    (notified when there is something to send), a blocked ``track()`` on ``room``. The
    methods whose names say "locked" expect the caller to hold ``lock``.
    """

    def __init__(
        self, *, max_pending: int, batch_size: int, on_full: str, backoff: RetryPolicy
    ) -> None:
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.on_full = on_full
        self.backoff = backoff
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.room = threading.Condition(self.lock)
        self._queue: deque[PendingEvent] = deque()
        self._in_flight = 0
        self.failures = 0  # transient failures in a row
        self.retry_at = 0.0  # no request before this (monotonic) time
        self.counts = dict.fromkeys(COUNTS, 0)
        self.last_error: str | None = None
        self.delivered_at: float | None = None  # when the portal last took an event

    @property
    def pending(self) -> int:
        with self.lock:
            return len(self._queue) + self._in_flight

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self.counts,
                "pending": len(self._queue) + self._in_flight,
                "last_error": self.last_error,
            }

    # --- in --------------------------------------------------------------------------------

    def add(
        self, item: PendingEvent, *, block_timeout: float | None, may_wait: Callable[[], bool]
    ) -> int:
        """Queues ``item`` as ``on_full`` says; returns the dropped count so far if this
        dropped an event, else 0. Raises ``TrackerFull`` ("raise"; "block" after
        ``block_timeout`` seconds, None: no limit, or at once unless ``may_wait()``)."""
        with self.lock:
            deadline = None if block_timeout is None else time.monotonic() + block_timeout
            while self.on_full == "block" and self._full():
                if not may_wait():
                    raise TrackerFull("The tracker is full and not running; start() it.")
                wait = None if deadline is None else deadline - time.monotonic()
                if (wait is not None and wait <= 0) or not self.room.wait(wait):
                    raise TrackerFull(f"No room for usage within {block_timeout} s.")
            if self.on_full == "raise" and self._full():
                raise TrackerFull(f"{self.max_pending} usage events are waiting.")
            # Counted before the full-queue policy, so that whatever it discards is in
            # both tracked and dropped.
            self.counts["tracked"] += 1
            dropped = 0
            if self._full():  # "drop_oldest"
                self.counts["dropped"] += 1
                dropped = self.counts["dropped"]
                if self._queue:
                    self._queue.popleft()
                    self._queue.append(item)
                # else every waiting event is in flight: the new one is the one dropped
            else:
                self._queue.append(item)
            if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                self.wake.notify_all()
            return dropped

    def _full(self) -> bool:
        return len(self._queue) + self._in_flight >= self.max_pending

    # --- out and back ----------------------------------------------------------------------

    def queued(self) -> int:
        with self.lock:
            return len(self._queue)

    def take(self, size: int) -> list[PendingEvent]:
        """Up to ``size`` events from the head, now in flight."""
        with self.lock:
            size = min(size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            self._in_flight += size
            return batch

    def put_back(self, batch: list[PendingEvent], error: BillingError, *, again: int) -> float:
        """The portal did not take ``batch``: its events wait at the head of the queue until
        a backoff has passed; returns that wait in seconds."""
        with self.lock:
            self._return(batch, again=again)
            self.failures += 1
            wait = self.backoff.backoff(min(self.failures - 1, 16))
            if error.retry_after is not None:
                # The portal's wish, within our limits: a Retry-After of 0 must not turn
                # into a loop without pause, nor one of an hour into an hour's silence.
                wait = min(max(error.retry_after, wait), self.backoff.backoff_max)
            self.retry_at = time.monotonic() + wait
            self.last_error = str(error)
            return wait

    def put_back_now(self, batch: list[PendingEvent], error: BillingError, *, again: int) -> None:
        """``batch`` goes again at once (the portal found it too large as a whole)."""
        with self.lock:
            self._return(batch, again=again)
            self.last_error = str(error)

    def settle(
        self,
        batch: list[PendingEvent],
        *,
        delivered: int,
        failed: list[tuple[PendingEvent, BillingError]],
        duplicates: int,
        again: int,
    ) -> None:
        """The portal answered for every event of ``batch``: ``delivered`` of them it holds,
        ``failed`` it refused for good."""
        with self.lock:
            self._in_flight -= len(batch)
            self.counts["flushed"] += delivered
            self.counts["duplicates"] += duplicates
            self.counts["failed"] += len(failed)
            self.counts["retried"] += again
            self.counts["batches"] += 1
            if delivered:
                self.delivered_at = time.monotonic()
            self.failures = 0
            self.retry_at = 0.0
            if failed:
                self.last_error = str(failed[0][1])
            self.room.notify_all()

    def _return(self, batch: list[PendingEvent], *, again: int) -> None:
        self._queue.extendleft(reversed(batch))
        self._in_flight -= len(batch)
        self.counts["retried"] += again
        self.counts["batches"] += 1
        self.wake.notify_all()  # the background thread may be waiting with nothing queued

    # --- when to send (the caller holds the lock) ------------------------------------------

    def due_locked(self, flush_interval: float) -> bool:
        """Whether the background thread should send now."""
        if not self._queue or time.monotonic() < self.retry_at:
            return False
        return bool(
            self.failures
            or len(self._queue) >= self.batch_size
            or self.waited_long_enough_locked(flush_interval)
        )

    def waited_long_enough_locked(self, flush_interval: float) -> bool:
        if not self._queue:
            return False
        return time.monotonic() >= self._queue[0].queued_at + flush_interval

    def wait_time_locked(self, flush_interval: float) -> float | None:
        """How long the background thread may sleep before it should look again."""
        if not self._queue:
            return None
        now = time.monotonic()
        if now < self.retry_at:
            wait = self.retry_at - now
        else:
            wait = max(self._queue[0].queued_at + flush_interval - now, 0.001)
        return min(wait, threading.TIMEOUT_MAX)  # it wakes, looks again and waits on
