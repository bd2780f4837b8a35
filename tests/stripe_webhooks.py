"""Signs events as Stripe does and posts them to the portal's webhook endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

WEBHOOK_SECRET = "whsec_test_portal"


def signature(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={signed.hexdigest()}"


def deliver(client, endpoint, event: dict, *, secret=WEBHOOK_SECRET, timestamp=None, body=None):
    """Posts ``event`` signed with ``secret``; ``body`` replaces the signed payload (to
    send something else than what was signed)."""
    payload = json.dumps(event)
    return client.post(
        f"/stripe/webhook/{endpoint.djstripe_uuid}/",
        data=payload if body is None else body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature(payload, secret, timestamp),
    )


def deliver_processed(client, endpoint, events) -> None:
    """Delivers ``events`` in order; each must be answered 200 *and* processed without an
    error (the view answers 200 once the delivery is stored, whatever processing does)."""
    from djstripe.models import WebhookEventTrigger

    for event in events:
        assert deliver(client, endpoint, event).status_code == 200
        trigger = WebhookEventTrigger.objects.latest("pk")
        assert trigger.processed and not trigger.exception, (event["type"], trigger.exception)


def stored_delivery(endpoint, event):
    """A verified delivery of ``event`` as dj-stripe's view stores it, not yet processed."""
    from djstripe.models import WebhookEventTrigger

    return WebhookEventTrigger.objects.create(
        headers={}, body=json.dumps(event), remote_ip="127.0.0.1", valid=True,
        webhook_endpoint=endpoint,
    )  # fmt: skip


CHECKOUT_URLS = {
    "success_url": "https://billing.example.com/ok",
    "cancel_url": "https://billing.example.com/no",
}


def session_id(checkout_url: str) -> str:
    return checkout_url.rsplit("/", 1)[1]
