"""The one way to Stripe: whether this portal is configured for it and the secret key every
Stripe call of the portal is made with. The modules that call Stripe's SDK (the catalog
sync, the customer and subscription, webhooks' re-fetches, the close's invoice items,
usage reporting) take the key here, so that none reads settings of its own and a portal
without Stripe refuses the same way everywhere."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from djstripe import models as djstripe
from djstripe.settings import djstripe_settings
from djstripe.signals import WEBHOOK_SIGNALS

from apps.core.errors import PortalError


class StripeNotConfigured(PortalError):
    code = "stripe_not_configured"
    status_code = 503
    message = "Payments are not configured on this portal (no Stripe secret key is set)."


def enabled() -> bool:
    return settings.STRIPE_ENABLED


def api_key() -> str:
    """The secret key for a call to Stripe; StripeNotConfigured without one."""
    if not enabled():
        raise StripeNotConfigured()
    return djstripe_settings.STRIPE_SECRET_KEY


def on_events(*event_types: str) -> Callable:
    """Connects the decorated handler to dj-stripe's signal of each of ``event_types``
    (``handler(sender, event, **kwargs)``). It runs after dj-stripe's own processing, in the
    same transaction as the event's row, once per event id. Each app keeps its handlers in
    its ``receivers.py``, which its ``AppConfig.ready`` imports."""

    def connect(handler: Callable) -> Callable:
        for event_type in event_types:
            WEBHOOK_SIGNALS[event_type].connect(
                handler,
                sender=djstripe.Event,
                dispatch_uid=f"{handler.__module__}.{handler.__name__}:{event_type}",
            )
        return handler

    return connect
