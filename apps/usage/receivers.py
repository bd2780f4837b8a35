"""The usage app's handlers of Stripe's events (dj-stripe's signals): an invoice paid or
failed settles the charges of its period (``stripe_invoices``)."""

from __future__ import annotations

from apps.core import stripe_gateway
from apps.usage import stripe_invoices


@stripe_gateway.on_events("invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed")
def on_invoice(sender, event, **kwargs) -> None:
    stripe_invoices.on_invoice(sender, event, **kwargs)
