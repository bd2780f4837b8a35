"""Stripe webhooks: verified and stored by dj-stripe's view, processed by a Celery task.

dj-stripe's endpoint (``/stripe/webhook/<uuid>/``) checks the signature with the
endpoint's secret and Stripe's timestamp tolerance and stores the delivery; this module
adds what it leaves open (a timestamp from the future, a test-mode event at a live
endpoint) and hands each accepted delivery to ``process_webhook``, retried with
exponential backoff. dj-stripe processes an event id once — also when two workers get it
at once (the event row is unique and written in the same transaction as every effect) —
and re-fetches the object from Stripe, and our handlers (each app's ``receivers.py``)
re-fetch what they act on, so late and out-of-order deliveries apply Stripe's current
state, never an older one.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import stripe
from celery import shared_task
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from djstripe import models as djstripe
from djstripe.settings import djstripe_settings
from djstripe.views import ProcessWebhookView

from apps.core import metrics

logger = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_SECONDS = 600
MAX_RETRIES = 10
SWEEP_DAYS = 3


def defer_to_celery(trigger, api_key=None) -> None:
    """dj-stripe's ``WEBHOOK_EVENT_CALLBACK``: nothing is processed inside the request;
    ``WebhookView`` enqueues the stored delivery once dj-stripe has saved it."""


class WebhookView(ProcessWebhookView):
    """dj-stripe's webhook view, with the checks it leaves to us before it and the hand-off
    to Celery after it."""

    def post(self, request, uuid):
        endpoint = get_object_or_404(djstripe.WebhookEndpoint, djstripe_uuid=uuid)
        refusal = _refusal(request, endpoint)
        if refusal:
            logger.warning("Stripe webhook refused (%s) at endpoint %s", refusal, endpoint.id)
            return HttpResponseBadRequest(refusal)
        response = super().post(request, uuid)
        if response.status_code == 200:
            metrics.WEBHOOKS.labels("received").inc()
            trigger_id = int(response.content)
            try:
                process_webhook.delay(trigger_id)
            except Exception:  # the broker is down: the sweep enqueues it later
                logger.exception("Could not enqueue Stripe webhook %s", trigger_id)
        return response


def _refusal(request, endpoint) -> str:
    header = request.headers.get("Stripe-Signature", "")
    stamps = [part[2:] for part in header.split(",") if part.startswith("t=")]
    if stamps:
        try:
            timestamp = int(stamps[0])
        except ValueError:
            return "malformed signature timestamp"
        if timestamp > time.time() + endpoint.djstripe_tolerance:
            return "signature timestamp in the future"
    try:
        body = json.loads(request.body)
    except ValueError:
        return "body is not JSON"
    if (
        isinstance(body, dict)
        and "livemode" in body
        and bool(body["livemode"]) != endpoint.livemode
    ):
        return "event mode does not match the endpoint's"
    return ""


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def process_webhook(self, trigger_id: int) -> str:
    """Processes one stored delivery: dj-stripe syncs the object, our handlers follow."""
    trigger = djstripe.WebhookEventTrigger.objects.select_related("webhook_endpoint").get(
        pk=trigger_id
    )
    if trigger.processed:
        return "already processed"
    livemode = trigger.webhook_endpoint.livemode if trigger.webhook_endpoint else False
    api_key = djstripe_settings.get_default_api_key(livemode=livemode)
    try:
        event = trigger.process(save=True, api_key=api_key)  # dj-stripe: event, processed
    except stripe.InvalidRequestError as error:
        if getattr(error, "code", "") == "resource_missing":
            # The object is gone (or never was ours): nothing to follow, nothing to retry.
            logger.warning("Stripe webhook %s names a missing object: %s", trigger_id, error)
            _record(trigger_id, processed=True, exception=f"ignored: {error}"[:255])
            _processed(trigger, "ignored")
            return "ignored"
        _record(trigger_id, processed=False, exception=str(error)[:255])
        metrics.WEBHOOKS.labels("failed").inc()
        raise
    except Exception as error:
        _record(trigger_id, processed=False, exception=str(error)[:255])
        metrics.WEBHOOKS.labels("failed").inc()
        raise
    _processed(trigger, "processed")
    return event.type


def _processed(trigger, outcome: str) -> None:
    metrics.WEBHOOKS.labels(outcome).inc()
    if trigger.created:
        lag = (timezone.now() - trigger.created).total_seconds()
        metrics.WEBHOOK_LAG.observe(max(lag, 0.0))


def _record(trigger_id: int, *, processed: bool, exception: str) -> None:
    djstripe.WebhookEventTrigger.objects.filter(pk=trigger_id).update(
        processed=processed, exception=exception
    )


@shared_task
def process_pending_webhooks() -> int:
    """Enqueues valid deliveries left unprocessed after a minute and never attempted (a lost
    enqueue, a worker that died): the periodic safety net of ``WebhookView``. A delivery
    whose processing failed carries its exception and is in Celery's retry chain already;
    one older than ``SWEEP_DAYS`` is left to staff (Stripe itself stops after three)."""
    now = timezone.now()
    pending = list(
        djstripe.WebhookEventTrigger.objects.filter(
            valid=True,
            processed=False,
            exception="",
            created__lt=now - timedelta(minutes=1),
            created__gte=now - timedelta(days=SWEEP_DAYS),
        )
        .order_by("created")
        .values_list("pk", flat=True)[:500]
    )
    for trigger_id in pending:
        process_webhook.delay(trigger_id)
    return len(pending)
