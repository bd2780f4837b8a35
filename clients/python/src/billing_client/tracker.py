"""``UsageTracker``: usage recorded in the background, in batches, exactly once.

``track()`` only queues the event (no I/O): it stamps the time it happened and gives it
its idempotency key there and then. A background thread posts the queue to
``usage/batch`` when ``batch_size`` events wait or the oldest has waited
``flush_interval_seconds``. Each event keeps its key through every attempt, so a batch
sent again after a timeout or a lost connection is answered as duplicates for what the
portal already holds, and nothing is counted twice.

What happens to an event:

* accepted, or answered as a duplicate: **flushed**;
* refused by the portal for itself (a 4xx per-event error in the batch answer: unknown
  product, hard budget exceeded, too old, ...), or the whole batch refused with a 4xx
  (bad key, suspended organisation): **failed**, handed to ``on_failure`` and never sent
  again (the same request would be refused the same way);
* no answer (connection refused or lost, timeout), 5xx or 429: stays **pending**, at the
  head of the queue, and is sent again after an exponential backoff with jitter (or
  after the ``Retry-After`` the portal asked for).

Memory is bounded: at most ``max_pending`` events wait (queued or in flight). When the
queue is full, ``on_full`` decides: ``"drop_oldest"`` (the default) discards the oldest
queued event and counts it in ``dropped``, so a service never stalls or fails because the
portal is down; ``"block"`` makes ``track()`` wait for room (at most ``block_timeout``
seconds, then ``TrackerFull``), for services that would rather slow down than lose usage;
``"raise"`` raises ``TrackerFull`` at once and lets the caller decide.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Callable

from billing_client.client import BillingClient
from billing_client.endpoints import new_idempotency_key, usage_event
from billing_client.errors import BillingError
from billing_client.parsing import Quantity, dumps
from billing_client.retrying import RetryPolicy

logger = logging.getLogger("billing_client.tracker")

MAX_BATCH = 1000  # the portal's limit per usage/batch request
ON_FULL = ("drop_oldest", "block", "raise")

FailureHandler = Callable[[dict, BillingError], None]


class TrackerFull(Exception):
    """The tracker holds ``max_pending`` events and its policy refuses another."""


class _Pending:
    __slots__ = ("attempts", "event", "queued_at")

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.attempts = 0
        self.queued_at = time.monotonic()


class UsageTracker:
    """Batches usage events to the portal from a background thread (see the module's
    description for the delivery guarantees and the full-queue policy).

    Give a ``client`` (a ``BillingClient``), or ``base_url`` and ``api_key`` for the tracker
    to make (and close) its own. ``organization_id``: the organisation every event is for,
    unless ``track`` names another (needed with a service key). ``flush_at_exit``: deliver
    what is pending when the interpreter exits, trying for at most ``exit_timeout`` seconds.

    >>> with UsageTracker(client, batch_size=500) as tracker:
    ...     tracker.track_execution(workflow_id="wf-42")
    """

    def __init__(
        self,
        client: BillingClient | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        organization_id: str | None = None,
        batch_size: int = 100,
        flush_interval_seconds: float = 5.0,
        max_pending: int = 50_000,
        on_full: str = "drop_oldest",
        block_timeout: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        flush_at_exit: bool = True,
        exit_timeout: float = 10.0,
        on_failure: FailureHandler | None = None,
    ) -> None:
        if client is None:
            if not (base_url and api_key):
                raise ValueError("Give a client, or base_url and api_key.")
            client = BillingClient(base_url, api_key, organization_id=organization_id)
            self._owns_client = True
        elif not isinstance(client, BillingClient):
            raise TypeError("UsageTracker needs a BillingClient (it sends from its own thread).")
        else:
            self._owns_client = False
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}.")
        if max_pending < batch_size:
            raise ValueError("max_pending must be at least batch_size.")
        if on_full not in ON_FULL:
            raise ValueError(f"on_full is one of: {', '.join(ON_FULL)}.")
        if flush_interval_seconds <= 0:
            raise ValueError("flush_interval_seconds must be positive.")
        self.client = client
        self.organization_id = organization_id
        self.batch_size = batch_size
        self.flush_interval_seconds = flush_interval_seconds
        self.max_pending = max_pending
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.exit_timeout = exit_timeout
        self.on_failure = on_failure
        self._backoff = RetryPolicy(backoff_base=backoff_base, backoff_max=backoff_max)

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the flush thread waits here
        self._room = threading.Condition(self._lock)  # track() waits here ("block")
        self._flushing = threading.Lock()  # one flush at a time, so order is kept
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._failures = 0  # transient failures in a row
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._counts = dict.fromkeys(
            ("tracked", "flushed", "duplicates", "failed", "retried", "dropped", "batches"), 0
        )
        self._last_error: str | None = None
        self._exit_hook: Callable[[], None] | None = None
        self._flush_at_exit = flush_at_exit
        self._watch_exit()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> UsageTracker:
        """Starts the background flush thread (again, after ``stop``)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            if self._owns_client and self.client.is_closed:
                config = self.client.config
                self.client = BillingClient(
                    config.base_url, config.api_key, organization_id=config.organization_id
                )
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="billing-usage-tracker", daemon=True
            )
            self._thread.start()
        self._watch_exit()
        return self

    def stop(self, timeout: float | None = 10.0) -> int:
        """Stops the flush thread and delivers what is pending, trying (with backoff) for at
        most ``timeout`` seconds (None: until delivered). Returns the number flushed by
        this final delivery; what could not be delivered stays in ``pending``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            self._room.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        with self._lock:
            self._thread = None
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
        flushed = self.flush(timeout=remaining)
        pending = self.pending
        if pending:
            logger.warning("Usage tracker stopped with %d events not delivered", pending)
        else:
            self._forget_exit()
        return flushed

    def close(self, timeout: float | None = 10.0) -> int:
        """``stop()``, then closes the client the tracker made for itself (``start`` makes
        a new one)."""
        flushed = self.stop(timeout)
        self._forget_exit()
        if self._owns_client:
            self.client.close()
        return flushed

    def __enter__(self) -> UsageTracker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> UsageTracker:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    async def aflush(self, timeout: float | None = None) -> int:
        """``flush`` in a worker thread, for async code."""
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    async def astop(self, timeout: float | None = 10.0) -> int:
        """``stop`` in a worker thread, for async code."""
        return await asyncio.get_running_loop().run_in_executor(None, self.stop, timeout)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    # --- tracking --------------------------------------------------------------------------

    def track(
        self,
        product_id: str,
        quantity: Quantity | None = None,
        *,
        dimensions: Mapping[str, Quantity] | None = None,
        user_id: str | None = None,
        occurred_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        organization_id: str | None = None,
        session_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queues one event and returns its idempotency key. Never does I/O (with
        ``on_full="block"`` it may wait for room). ``metadata`` is stored with the event
        as its ``usage_details``; ``occurred_at`` defaults to now."""
        event = usage_event(
            product_id=product_id,
            quantity=quantity,
            dimensions=dimensions,
            event_id=idempotency_key or new_idempotency_key(),
            organization_id=organization_id or self.organization_id,
            user_id=user_id,
            session_id=session_id,
            occurred_at=occurred_at or datetime.now(timezone.utc),
            usage_details=metadata,
        )
        dumps(event)  # what cannot be sent is refused here, not retried later
        self._enqueue(_Pending(event))
        return event["event_id"]

    def track_tokens(
        self,
        model: str,
        input_tokens: Quantity | None = None,
        output_tokens: Quantity | None = None,
        **common: Any,
    ) -> str:
        """Tokens of one model call; ``model`` is the product id (``"gpt-4o"``)."""
        dimensions = {}
        if input_tokens is not None:
            dimensions["input_tokens"] = input_tokens
        if output_tokens is not None:
            dimensions["output_tokens"] = output_tokens
        if not dimensions:
            raise ValueError("Give input_tokens and/or output_tokens.")
        return self.track(model, dimensions=dimensions, **common)

    def track_execution(
        self,
        workflow_id: str | None = None,
        *,
        product_id: str = "agent-run",
        quantity: Quantity = 1,
        **common: Any,
    ) -> str:
        """One agent or workflow execution."""
        return self._track_with(product_id, quantity, {"workflow_id": workflow_id}, common)

    def track_api_call(
        self,
        endpoint: str | None = None,
        method: str | None = None,
        *,
        product_id: str = "gateway-request",
        quantity: Quantity = 1,
        **common: Any,
    ) -> str:
        """One API (gateway) request."""
        details = {"endpoint": endpoint, "method": method}
        return self._track_with(product_id, quantity, details, common)

    def track_storage(
        self,
        gb_months: Quantity,
        *,
        storage_type: str | None = None,
        product_id: str = "object-storage",
        **common: Any,
    ) -> str:
        """Storage, in GB-months (the unit of the catalog's storage product)."""
        return self._track_with(product_id, gb_months, {"storage_type": storage_type}, common)

    def _track_with(self, product_id, quantity, details, common) -> str:
        metadata = {k: v for k, v in details.items() if v is not None}
        metadata.update(common.pop("metadata", None) or {})
        return self.track(product_id, quantity, metadata=metadata or None, **common)

    def _enqueue(self, item: _Pending) -> None:
        dropped = 0
        with self._lock:
            deadline = None
            if self.block_timeout is not None:
                deadline = time.monotonic() + self.block_timeout
            while len(self._queue) + self._in_flight >= self.max_pending:
                if self.on_full == "raise":
                    raise TrackerFull(f"{self.max_pending} usage events are waiting.")
                if self.on_full == "drop_oldest":
                    if self._queue:
                        self._queue.popleft()
                    else:  # everything waiting is in flight: the new one gives way
                        item = None
                    dropped += 1
                    self._counts["dropped"] += 1
                    if item is None:
                        break
                    continue
                if not self.running or self._stopping:
                    raise TrackerFull("The tracker is full and not running; start() it.")
                wait = None if deadline is None else deadline - time.monotonic()
                if (wait is not None and wait <= 0) or not self._room.wait(wait):
                    raise TrackerFull(f"No room for usage within {self.block_timeout} s.")
            if item is not None:
                self._queue.append(item)
                self._counts["tracked"] += 1
                if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                    self._wake.notify_all()
            total_dropped = self._counts["dropped"]
        if self._exit_hook is None:
            self._watch_exit()
        if dropped and (total_dropped == dropped or total_dropped % 1000 < dropped):
            logger.warning("Usage tracker full (%d events): %d dropped", self.max_pending,
                           total_dropped)  # fmt: skip

    # --- delivery --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Sends what is pending now, in batches; returns how many events the portal now
        holds (accepted or duplicates). On a transient failure it waits and tries again
        while ``timeout`` seconds allow; without ``timeout`` it returns at once and leaves
        the rest pending for the background thread."""
        return self._deliver(timeout=timeout, whole_batches_only=False)

    def _deliver(self, *, timeout: float | None, whole_batches_only: bool) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = 0
        with self._flushing:
            with self._lock:
                budget = len(self._queue)
            if whole_batches_only:
                budget -= budget % self.batch_size
            while budget > 0:
                sent, delivered, error = self._send_next_batch(budget)
                if sent == 0:
                    break
                flushed += delivered
                if error is None:
                    budget -= sent
                    continue
                delay = max(self._retry_at - time.monotonic(), 0)
                if deadline is None or time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
        return flushed

    def _send_next_batch(self, budget: int) -> tuple[int, int, BillingError | None]:
        """Sends the head of the queue once: (events sent, delivered, transient error)."""
        with self._lock:
            size = min(self.batch_size, budget, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            self._in_flight += size
        if not batch:
            return 0, 0, None
        again = sum(1 for item in batch if item.attempts)
        for item in batch:
            item.attempts += 1
        try:
            answer = self.client.record_batch([item.event for item in batch], max_retries=0)
        except BillingError as error:
            if error.is_transient:
                self._put_back(batch, error, again)
                return len(batch), 0, error
            self._settle(batch, [], [(item, error) for item in batch], again=again)
            return len(batch), 0, None
        except Exception as error:  # not the portal's answer: keep the events, try later
            logger.exception("Usage tracker could not send a batch")
            transient = BillingError("client_error", repr(error))
            self._put_back(batch, transient, again)
            return len(batch), 0, transient
        if len(answer.results) != len(batch):
            malformed = BillingError("malformed_response", "The batch answer does not match.")
            self._put_back(batch, malformed, again)
            return len(batch), 0, malformed
        delivered, failed, duplicates = [], [], 0
        for item, result in zip(batch, answer.results):
            if result.recorded:
                delivered.append(item)
                duplicates += result.status == "duplicate"
            else:
                failed.append((item, result.error))
        self._settle(batch, delivered, failed, again=again, duplicates=duplicates)
        return len(batch), len(delivered), None

    def _put_back(self, batch: list[_Pending], error: BillingError, again: int) -> None:
        with self._lock:
            self._queue.extendleft(reversed(batch))
            self._in_flight -= len(batch)
            self._counts["retried"] += again
            self._counts["batches"] += 1
            self._failures += 1
            wait = error.retry_after
            if wait is None:
                wait = self._backoff.backoff(min(self._failures - 1, 16))
            self._retry_at = time.monotonic() + wait
            self._last_error = str(error)
        logger.warning("Usage batch not delivered (%s); %d events kept, next try in %.1f s",
                       error, len(batch), wait)  # fmt: skip

    def _settle(self, batch, delivered, failed, *, again: int, duplicates: int = 0) -> None:
        """Counts a batch the portal answered: ``failed`` holds (event, error) pairs."""
        with self._lock:
            self._in_flight -= len(batch)
            self._counts["flushed"] += len(delivered)
            self._counts["duplicates"] += duplicates
            self._counts["failed"] += len(failed)
            self._counts["retried"] += again
            self._counts["batches"] += 1
            self._failures = 0
            self._retry_at = 0.0
            if failed:
                self._last_error = str(failed[0][1])
            self._room.notify_all()
        if not failed:
            return
        logger.error("%d usage events refused by the portal (first: %s)", len(failed), failed[0][1])
        if self.on_failure is None:
            return
        for item, error in failed:
            try:
                self.on_failure(item.event, error)
            except Exception:
                logger.exception("on_failure raised")

    # --- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._due():
                    self._wake.wait(self._wait_time())
                if self._stopping:
                    return
                # Full batches go at once; a partial one when it has waited its interval
                # (or when trying again after a failure).
                whole_batches_only = not (self._failures or self._waited_long_enough())
            try:
                self._deliver(timeout=None, whole_batches_only=whole_batches_only)
            except Exception:  # the thread must outlive any one failure
                logger.exception("Usage tracker flush failed")
                time.sleep(self._backoff.backoff(0))

    def _due(self) -> bool:
        if not self._queue:
            return False
        now = time.monotonic()
        if now < self._retry_at:
            return False
        return bool(
            self._failures or len(self._queue) >= self.batch_size or self._waited_long_enough()
        )

    def _waited_long_enough(self) -> bool:
        if not self._queue:
            return False
        return time.monotonic() >= self._queue[0].queued_at + self.flush_interval_seconds

    def _wait_time(self) -> float | None:
        if not self._queue:
            return None
        now = time.monotonic()
        if now < self._retry_at:
            return self._retry_at - now
        return max(self._queue[0].queued_at + self.flush_interval_seconds - now, 0.001)

    # --- stats and exit --------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """``tracked`` (queued by ``track``), ``flushed`` (held by the portal, duplicates
        included), ``duplicates``, ``failed`` (refused for good), ``pending`` (queued or in
        flight), ``retried`` (event sends after the first), ``dropped`` (discarded by the
        full-queue policy), ``batches`` (requests made), ``last_error``."""
        with self._lock:
            return {
                **self._counts,
                "pending": len(self._queue) + self._in_flight,
                "last_error": self._last_error,
            }

    def _watch_exit(self) -> None:
        if not self._flush_at_exit or self._exit_hook is not None:
            return
        ref = weakref.ref(self)

        def flush_at_exit() -> None:
            tracker = ref()
            if tracker is not None and (tracker.pending or tracker.running):
                tracker.stop(timeout=tracker.exit_timeout)

        self._exit_hook = flush_at_exit
        atexit.register(flush_at_exit)

    def _forget_exit(self) -> None:
        hook, self._exit_hook = self._exit_hook, None
        if hook is not None:
            atexit.unregister(hook)
