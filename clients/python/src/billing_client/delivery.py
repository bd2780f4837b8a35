"""One request of a ``UsageTracker`` flush: the head of the queue sent as a batch, the
portal's answer read (which answer is whose, what a batch refused as a whole becomes) and
the events settled, put back or split."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from billing_client.client import BillingClient
from billing_client.errors import BillingError
from billing_client.pending import PendingEvent, PendingQueue
from billing_client.results import BatchItem
from billing_client.transport import capped_timeout

logger = logging.getLogger("billing_client.tracker")

# What a batch refused as a whole becomes (see ``refusal_of``).
KEEP, SPLIT, FAIL = "keep", "split", "fail"
# The key was refused: it may be being rotated, or the organisation reinstated, and the
# events are not at fault. They wait (with backoff) rather than being lost.
KEY_REFUSED_STATUSES = frozenset({401, 403})
TOO_LARGE_STATUS = 413
# The portal failed on the request (not "unavailable": 502, 503 and 504 are outages). Once
# a batch holding an event was answered so twice, it is sent in halves, so that one event
# the portal cannot take never holds back the others; an event answered so alone
# POISON_ATTEMPTS times, while the portal took other events since its first such answer,
# fails for good instead of being sent for ever.
SERVER_FAILED_STATUS = 500
POISON_ATTEMPTS = 5


def refusal_of(
    error: BillingError, batch: Sequence[PendingEvent], *, delivered_at: float | None = None
) -> str:
    """``KEEP`` the events pending (no answer, 5xx, 429, 408, or the key refused: 401,
    403), ``SPLIT`` the batch in halves and send them again (413, or a 500 again, more than
    one event), or ``FAIL`` them for good (any other 4xx: the same request would be refused
    the same way; a poison event, see ``POISON_ATTEMPTS``)."""
    if error.status == SERVER_FAILED_STATUS:
        if len(batch) > 1:
            if max(item.server_errors for item in batch) >= 2:
                return SPLIT
        elif _is_poison(batch[0], delivered_at):
            return FAIL
    if error.is_transient or error.status in KEY_REFUSED_STATUSES:
        return KEEP
    if error.status == TOO_LARGE_STATUS and len(batch) > 1:
        return SPLIT
    return FAIL


def _is_poison(item: PendingEvent, delivered_at: float | None) -> bool:
    """Answered 500 alone often enough, while the portal took other events since."""
    first = item.first_server_error_at
    return (
        item.server_errors >= POISON_ATTEMPTS
        and first is not None
        and delivered_at is not None
        and delivered_at > first
    )


def match_answers(
    batch: Sequence[PendingEvent], answers: Sequence[BatchItem]
) -> list[BatchItem] | None:
    """The portal's answer for each event of ``batch``, in the batch's order; None when the
    answers do not account for every event (then nothing in them can be trusted).

    The portal answers in the order it was sent, each answer naming its ``event_id``; an
    answer in another order is matched by key (and logged)."""
    if len(answers) == len(batch) and all(
        answer.event_id == item.key or (answer.event_id is None and answer.index == position)
        for position, (item, answer) in enumerate(zip(batch, answers))
    ):
        return list(answers)
    by_key: dict[str, BatchItem] = {}
    for answer in answers:
        if answer.event_id is not None:
            by_key.setdefault(answer.event_id, answer)
    matched = [by_key.get(item.key) for item in batch]
    if any(answer is None for answer in matched):
        logger.error(
            "The batch answer does not name every event sent (%d answers for %d events)",
            len(answers),
            len(batch),
        )
        return None
    logger.warning("The batch answer is not in the order sent; answers matched by event_id")
    return matched  # type: ignore[return-value]


class SentBatch:
    """What one request of a flush came to."""

    __slots__ = ("delivered", "error", "failed", "poison_failed", "sent", "settled", "split_to",
                 "too_large")  # fmt: skip

    def __init__(self, sent: int = 0) -> None:
        self.sent = sent  # events in the request
        self.settled = 0  # of which the portal answered for good (flushed or failed)
        self.delivered = 0  # of which the portal holds
        self.failed: list[tuple[PendingEvent, BillingError]] = []
        self.error: BillingError | None = None  # the events wait for a backoff, then go again
        self.split_to = 0  # refused as a whole: send at most this many at a time
        self.too_large = False  # (and the portal said it was too large: for the whole flush)
        self.poison_failed = False  # an event the portal failed on was given up


def send_batch(
    client: BillingClient, pending: PendingQueue, size: int, time_left: float | None
) -> SentBatch:
    """Sends the head of ``pending`` once (at most ``size`` events; the request given at
    most ``time_left`` seconds, None: the client's timeout) and settles what the answer
    says, or puts the events back."""
    batch = pending.take(size)
    if not batch:
        return SentBatch()
    again = sum(1 for item in batch if item.attempts)
    for item in batch:
        item.attempts += 1
    events = [item.event for item in batch]
    try:
        if time_left is None:
            answer = client.record_batch(events, max_retries=0)
        else:
            timeout = capped_timeout(client.timeout, time_left)
            answer = client.record_batch(events, max_retries=0, timeout=timeout)
    except BillingError as error:
        if error.status == SERVER_FAILED_STATUS:
            now = time.monotonic()
            for item in batch:
                item.server_errors += 1
                if item.first_server_error_at is None:
                    item.first_server_error_at = now
        refusal = refusal_of(error, batch, delivered_at=pending.delivered_at)
        if refusal == KEEP:
            return _put_back(pending, batch, error, again)
        if refusal == SPLIT:
            return _split(pending, batch, error, again)
        sent = _settle(pending, batch, [], [(item, error) for item in batch], again=again)
        sent.poison_failed = error.status == SERVER_FAILED_STATUS
        return sent
    except Exception as error:  # not the portal's answer: keep the events, try later
        logger.exception("Usage tracker could not send a batch")
        return _put_back(pending, batch, BillingError("client_error", repr(error)), again)
    answers = match_answers(batch, answer.results)
    if answers is None:
        malformed = BillingError("malformed_response", "The batch answer does not match.")
        return _put_back(pending, batch, malformed, again)
    delivered, failed, duplicates = [], [], 0
    for item, result in zip(batch, answers):
        if result.recorded:
            delivered.append(item)
            duplicates += result.status == "duplicate"
        else:
            failed.append((item, result.error or BillingError("rejected", "Refused.")))
    return _settle(pending, batch, delivered, failed, again=again, duplicates=duplicates)


def _put_back(pending: PendingQueue, batch, error: BillingError, again: int) -> SentBatch:
    wait = pending.put_back(batch, error, again=again)
    logger.warning("Usage batch not delivered (%s); %d events kept, next try in %.1f s",
                   error, len(batch), wait)  # fmt: skip
    sent = SentBatch(len(batch))
    sent.error = error
    return sent


def _split(pending: PendingQueue, batch, error: BillingError, again: int) -> SentBatch:
    pending.put_back_now(batch, error, again=again)
    logger.warning("Usage batch of %d events refused as a whole (%s); sending it in halves",
                   len(batch), error)  # fmt: skip
    sent = SentBatch(len(batch))
    sent.split_to = max(len(batch) // 2, 1)
    sent.too_large = error.status == TOO_LARGE_STATUS
    return sent


def _settle(pending: PendingQueue, batch, delivered, failed, *, again, duplicates=0) -> SentBatch:
    pending.settle(
        batch, delivered=len(delivered), failed=failed, duplicates=duplicates, again=again
    )
    if failed:
        logger.error("%d usage events refused by the portal (first: %s)", len(failed),
                     failed[0][1])  # fmt: skip
    sent = SentBatch(len(batch))
    sent.settled, sent.delivered, sent.failed = len(batch), len(delivered), failed
    return sent
