"""The customers app's handlers of Stripe's events (dj-stripe's signals): a subscription
that changed, a Checkout that completed (a wallet top-up or a subscription), a refunded
top-up. Each re-fetches what it acts on, so a late or repeated delivery applies Stripe's
current state."""

from __future__ import annotations

import logging

import stripe
from djstripe import models as djstripe

from apps.core import stripe_gateway
from apps.customers import billing, wallets
from apps.customers.wallets import InsufficientWalletBalance
from apps.pricing.cost_engine import from_minor_units

logger = logging.getLogger(__name__)


def _object(event) -> dict:
    return (event.data or {}).get("object") or {}


@stripe_gateway.on_events(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)
def on_subscription(sender, event, **kwargs) -> None:
    data = _object(event)
    organization = billing.organization_for_customer(_id(data.get("customer")))
    if organization is None:
        logger.warning("Stripe event %s: subscription of an unknown customer", event.id)
        return
    billing.follow_subscription(organization, data["id"])


@stripe_gateway.on_events("checkout.session.completed", "checkout.session.async_payment_succeeded")
def on_checkout_completed(sender, event, **kwargs) -> None:
    # dj-stripe's own handler (connected first: djstripe precedes our apps) has just
    # re-fetched the session from Stripe and stored it in this transaction.
    session = djstripe.Session.objects.get(id=_object(event)["id"]).stripe_data
    metadata = session.get("metadata") or {}
    organization = billing.organization_for_customer(_id(session.get("customer")))
    if organization is None:
        logger.warning("Stripe event %s: Checkout of an unknown customer", event.id)
        return
    if metadata.get("kind") == billing.TOP_UP:
        if session.get("payment_status") != "paid":
            return  # an asynchronous payment: credited on async_payment_succeeded
        amount = from_minor_units(session["amount_total"], session["currency"])
        wallets.top_up_wallet(
            organization=organization,
            amount=amount,
            actor="stripe",
            reason="Wallet top-up through Stripe Checkout",
            reference=session["id"],
        )
    elif session.get("subscription"):
        billing.follow_subscription(organization, _id(session["subscription"]))


@stripe_gateway.on_events("charge.refunded", "charge.refund.updated")
def on_charge_refunded(sender, event, **kwargs) -> None:
    """A refunded wallet top-up takes the refunded amount back out of the wallet, once per
    Stripe refund."""
    key = stripe_gateway.api_key()
    obj = _object(event)
    charge_id = obj["id"] if obj.get("object") == "charge" else _id(obj.get("charge"))
    charge = stripe.Charge.retrieve(charge_id, api_key=key, expand=["refunds"])
    intent_id = _id(charge.get("payment_intent"))
    if not intent_id:
        return
    intent = stripe.PaymentIntent.retrieve(intent_id, api_key=key)
    if (intent.get("metadata") or {}).get("kind") != billing.TOP_UP:
        return
    organization = billing.organization_for_customer(_id(charge.get("customer")))
    if organization is None:
        return
    for refund in (charge.get("refunds") or {}).get("data") or []:
        if refund.get("status") != "succeeded":
            continue
        try:
            wallets.adjust_wallet(
                organization=organization,
                amount=-from_minor_units(refund["amount"], charge["currency"]),
                actor="stripe",
                reason="Wallet top-up refunded in Stripe",
                reference=f"stripe-refund:{refund['id']}",
            )
        except InsufficientWalletBalance:
            logger.error(
                "Refund %s of a top-up exceeds what is left in %s's wallet; finance must "
                "settle it", refund["id"], organization.slug,
            )  # fmt: skip


def _id(value) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value
