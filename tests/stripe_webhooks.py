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
