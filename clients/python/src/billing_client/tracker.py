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
  product, hard budget exceeded, too old, ...), or the whole batch refused as malformed
  (400, 422, ...): **failed**, handed to ``on_failure`` and never sent again (the same
  request would be refused the same way);
* the whole batch refused as too large (413): split in halves, each sent again at once
  with the same keys (a single event refused as too large is failed);
* no answer (connection refused or lost, timeout), 5xx, 429, or the key refused (401,
  403: a key being rotated, an organisation being reinstated): stays **pending**, at the
  head of the queue, and is sent again after an exponential backoff with jitter. A
  ``Retry-After`` is followed within the tracker's own limits: never sooner than its
  backoff, never later than ``backoff_max``.

Memory is bounded: at most ``max_pending`` events wait (queued or in flight). When the
queue is full, ``on_full`` decides: ``"drop_oldest"`` (the default) discards the oldest
queued event (the new one itself when every waiting event is in flight) and counts it in
``dropped``, so a service never stalls or fails because the portal is down; ``"block"``
makes ``track()`` wait for room (at most ``block_timeout`` seconds, 30 by default, then
``TrackerFull``; None waits for as long as it takes), for services that would rather slow
down than lose usage; ``"raise"`` raises ``TrackerFull`` at once and lets the caller
decide.

The counts add up: ``tracked == flushed + failed + pending + dropped`` at every moment.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Callable

from billing_client.client import BillingClient
from billing_client.delivery import send_batch
from billing_client.endpoints import new_idempotency_key, usage_event
from billing_client.errors import BillingError
from billing_client.parsing import Quantity, dumps
from billing_client.pending import ON_FULL, PendingEvent, PendingQueue, TrackerFull
from billing_client.retrying import RetryPolicy

__all__ = ["TrackerFull", "UsageTracker"]

logger = logging.getLogger("billing_client.tracker")

MAX_BATCH = 1000  # the portal's limit per usage/batch request

DEFAULT_BLOCK_TIMEOUT = 30.0

FailureHandler = Callable[[dict, BillingError], None]


class UsageTracker:
    """Batches usage events to the portal from a background thread (see the module's
    description for the delivery guarantees and the full-queue policy).

    Give a ``client`` (a ``BillingClient``), or ``base_url`` and ``api_key`` for the tracker
    to make (and close) its own. ``organization_id``: the organisation every event is for,
    unless ``track`` names another (needed with a service key). ``flush_at_exit``: deliver
    what is pending when the interpreter exits, trying for at most ``exit_timeout`` seconds.
    ``block_timeout``: how long ``track`` waits for room with ``on_full="block"`` (None:
    as long as it takes).

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
        block_timeout: float | None = DEFAULT_BLOCK_TIMEOUT,
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
        if block_timeout is not None and block_timeout < 0:
            raise ValueError("block_timeout must not be negative.")
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
        self._pending = PendingQueue(
            max_pending=max_pending, batch_size=batch_size, on_full=on_full, backoff=self._backoff
        )
        self._lock = self._pending.lock  # also guards the thread's state below
        self._flushing = threading.Lock()  # one flush at a time, so order is kept
        self._thread: threading.Thread | None = None
        # Each thread has its own stop signal: a thread still finishing a request after a
        # stop() that timed out ends after it, even if start() has made a new one.
        self._thread_stop = threading.Event()
        self._stopping = False
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
            self._thread_stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._thread_stop,), name="billing-usage-tracker",
                daemon=True,
            )  # fmt: skip
            self._thread.start()
        self._watch_exit()
        return self

    def stop(self, timeout: float | None = 10.0) -> int:
        """Stops the flush thread and delivers what is pending, trying (with backoff) for at
        most ``timeout`` seconds (None: until delivered): it waits that long at most for
        the thread's request under way, sends no request once the time is up and gives
        each one only the time left. Returns the number flushed by this final delivery;
        what could not be delivered stays in ``pending``."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        with self._lock:
            self._stopping = True
            self._thread_stop.set()
            thread, self._thread = self._thread, None
            self._pending.wake.notify_all()
            self._pending.room.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        flushed = self._deliver(deadline=deadline, retry=True)
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
        return self._pending.pending

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
        self._enqueue(PendingEvent(event))
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

    def _enqueue(self, item: PendingEvent) -> None:
        dropped = self._pending.add(
            item,
            block_timeout=self.block_timeout,
            may_wait=lambda: self.running and not self._stopping,
        )
        if self._exit_hook is None:
            self._watch_exit()
        if dropped == 1 or (dropped and dropped % 1000 == 0):
            logger.warning("Usage tracker full (%d events): %d dropped", self.max_pending,
                           dropped)  # fmt: skip

    # --- delivery --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Sends what is pending now, in batches; returns how many events the portal now
        holds (accepted or duplicates).

        With ``timeout``, it takes at most that long: it waits that long at most for a
        flush under way (another caller's, the background thread's), sends no request once
        the time is up, gives each request only the time left, and after a transient
        failure waits and tries again while time allows. Without ``timeout`` it sends each
        batch once and leaves what was not delivered pending for the background thread."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        return self._deliver(deadline=deadline, retry=timeout is not None)

    def _deliver(
        self,
        *,
        deadline: float | None,
        retry: bool,
        whole_batches_only: bool = False,
        stop: threading.Event | None = None,
    ) -> int:
        """Sends the queue as it is now; ``retry``: after a transient failure, wait and
        send again (until ``deadline``). ``on_failure`` is called once the flush is over,
        so that it may flush or stop the tracker itself."""
        wait = -1 if deadline is None else max(deadline - time.monotonic(), 0)
        if not self._flushing.acquire(timeout=wait):
            return 0
        flushed = 0
        failed: list[tuple[PendingEvent, BillingError]] = []
        try:
            budget = self._pending.queued()
            if whole_batches_only:
                budget -= budget % self.batch_size
            largest = self.batch_size  # smaller after a 413, for the rest of this flush
            size = largest  # smaller while an event the portal fails on is isolated
            while budget > 0 and not (stop is not None and stop.is_set()):
                time_left = None if deadline is None else deadline - time.monotonic()
                if time_left is not None and time_left <= 0:
                    break
                sent = send_batch(self.client, self._pending, min(size, budget), time_left)
                if sent.sent == 0:
                    break
                flushed += sent.delivered
                failed.extend(sent.failed)
                budget -= sent.settled
                if sent.split_to:
                    size = sent.split_to
                    if sent.too_large:
                        largest = size
                elif sent.poison_failed:
                    size = largest
                if sent.error is None:
                    continue
                if not retry:
                    break
                delay = max(self._pending.retry_at - time.monotonic(), 0)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    break
                time.sleep(delay)
        finally:
            self._flushing.release()
        self._report(failed)
        return flushed

    def _report(self, failed: list[tuple[PendingEvent, BillingError]]) -> None:
        if self.on_failure is None:
            return
        for item, error in failed:
            try:
                self.on_failure(item.event, error)
            except Exception:
                logger.exception("on_failure raised")

    # --- the background thread -------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        pending, interval = self._pending, self.flush_interval_seconds
        while not stop.is_set():
            try:  # the thread must outlive any one failure, waits included
                with pending.lock:
                    while not stop.is_set() and not pending.due_locked(interval):
                        pending.wake.wait(pending.wait_time_locked(interval))
                    if stop.is_set():
                        return
                    # Full batches go at once; a partial one when it has waited its
                    # interval (or when trying again after a failure).
                    whole_batches_only = not (
                        pending.failures or pending.waited_long_enough_locked(interval)
                    )
                self._deliver(
                    deadline=None, retry=False, whole_batches_only=whole_batches_only, stop=stop
                )
            except Exception:
                logger.exception("Usage tracker flush failed")
                stop.wait(self._backoff.backoff(0))

    # --- stats and exit --------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """``tracked`` (accepted by ``track``, including what the full-queue policy then
        dropped), ``flushed`` (held by the portal, duplicates included), ``duplicates``,
        ``failed`` (refused for good), ``pending`` (queued or in flight), ``retried``
        (event sends after the first), ``dropped`` (discarded by the full-queue policy),
        ``batches`` (requests made), ``last_error``. Read at one moment, they add up:
        ``tracked == flushed + failed + pending + dropped``."""
        return self._pending.stats()

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
