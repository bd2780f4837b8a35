"""The organisation's side of Stripe: its customer, Checkout, plan changes, cancellation,
and following the subscription's state. Only through the stripe SDK and dj-stripe.

The organisation's plan and status follow the subscription as Stripe has it *now*: each
change re-fetches the subscription under a lock on the organisation, so webhooks that
arrive twice, late or out of order cannot roll it back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe import models as djstripe

from apps.core.stripe_gateway import api_key, enabled
from apps.customers.errors import NoSubscription, PlanNotOnStripe
from apps.customers.models import Organization, SubscriptionStatus
from apps.pricing.cost_engine import to_minor_units
from apps.pricing.models import Plan, Product
from apps.pricing.periods import MONTH
from apps.pricing.stripe_catalog import metered_lookup_key

logger = logging.getLogger(__name__)

# Statuses in which the subscription's plan applies.
LIVE_STATUSES = {
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
}
RECONCILE_INVOICE_DAYS = timedelta(days=35)
TOP_UP = "wallet_top_up"
SUBSCRIBE = "subscription"


# --- the customer --------------------------------------------------------------------------


def customer_of(organization: Organization) -> djstripe.Customer | None:
    return (
        djstripe.Customer.objects.filter(
            subscriber=organization, livemode=settings.STRIPE_LIVE_MODE
        )
        .order_by("-djstripe_created")
        .first()
    )


def ensure_customer(organization: Organization) -> djstripe.Customer:
    """The organisation's Stripe customer, created the first time it is needed (with a
    Stripe idempotency key, so two first needs create one customer)."""
    customer, _ = djstripe.Customer.get_or_create(
        subscriber=organization,
        livemode=settings.STRIPE_LIVE_MODE,
        api_key=api_key(),
        metadata={"organization_id": organization.slug},
    )
    return customer


def sync_customer_details(organization: Organization) -> None:
    """Keeps the Stripe customer's name and billing email equal to the organisation's."""
    if not enabled():
        return
    customer = customer_of(organization)
    if customer is None:
        return
    data = customer.stripe_data or {}
    if data.get("email") == organization.billing_email and data.get("name") == organization.name:
        return
    updated = stripe.Customer.modify(
        customer.id, api_key=api_key(), email=organization.billing_email, name=organization.name
    )
    djstripe.Customer.sync_from_stripe_data(updated, api_key=api_key())


def organization_for_customer(customer_id: str | None) -> Organization | None:
    if not customer_id:
        return None
    # dj-stripe links the customer to its subscriber (and re-links one created elsewhere
    # from the ``djstripe_subscriber`` metadata it sets).
    customer = djstripe.Customer.objects.filter(id=customer_id).select_related("subscriber").first()
    return customer.subscriber if customer is not None else None


# --- Checkout and the customer portal -------------------------------------------------------


def checkout_subscription(
    organization: Organization, plan: Plan, *, success_url: str, cancel_url: str
) -> str:
    """A Checkout session subscribing the organisation to ``plan`` (its base fee and the
    metered prices of the catalog), with the plan's trial the first time; its URL."""
    if not plan.stripe_price_id:
        raise PlanNotOnStripe(details={"plan": plan.code})
    key = api_key()
    customer = ensure_customer(organization)
    line_items = [{"price": plan.stripe_price_id, "quantity": 1}]
    line_items += [{"price": price} for price in metered_price_ids(plan.currency)]
    subscription_data: dict = {
        "metadata": {"organization_id": organization.slug, "plan": plan.code}
    }
    if plan.trial_days and not _has_had_subscription(customer):
        subscription_data["trial_period_days"] = plan.trial_days
    session = stripe.checkout.Session.create(
        api_key=key,
        mode="subscription",
        customer=customer.id,
        client_reference_id=organization.slug,
        line_items=line_items,
        subscription_data=subscription_data,
        metadata={"organization_id": organization.slug, "kind": SUBSCRIBE, "plan": plan.code},
        success_url=success_url,
        cancel_url=cancel_url,
    )
    djstripe.Session.sync_from_stripe_data(session, api_key=key)
    return session["url"]


def checkout_top_up(
    organization: Organization, amount: Decimal, *, success_url: str, cancel_url: str
) -> str:
    """A one-time Checkout payment of ``amount`` (the organisation's currency) that credits
    the wallet when Stripe reports it paid; its URL."""
    key = api_key()
    customer = ensure_customer(organization)
    currency = organization.currency
    minor = to_minor_units(amount, currency)
    metadata = {"organization_id": organization.slug, "kind": TOP_UP}
    session = stripe.checkout.Session.create(
        api_key=key,
        mode="payment",
        customer=customer.id,
        client_reference_id=organization.slug,
        line_items=[
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency.lower(),
                    "unit_amount": minor,
                    "product_data": {"name": f"Wallet top-up ({organization.name})"},
                },
            }
        ],
        metadata=metadata,
        payment_intent_data={"metadata": metadata},
        success_url=success_url,
        cancel_url=cancel_url,
    )
    djstripe.Session.sync_from_stripe_data(session, api_key=key)
    return session["url"]


def customer_portal_url(organization: Organization, *, return_url: str) -> str:
    session = stripe.billing_portal.Session.create(
        api_key=api_key(), customer=ensure_customer(organization).id, return_url=return_url
    )
    return session["url"]


def metered_price_ids(currency: str) -> list[str]:
    """The metered prices, in ``currency``, of the active products on Stripe."""
    codes = Product.objects.filter(is_active=True).exclude(stripe_meter_id="")
    keys = [metered_lookup_key(code, currency) for code in codes.values_list("code", flat=True)]
    return list(
        djstripe.Price.objects.filter(lookup_key__in=keys, active=True)
        .order_by("lookup_key")
        .values_list("id", flat=True)
    )


def _has_had_subscription(customer: djstripe.Customer) -> bool:
    return djstripe.Subscription.objects.filter(customer=customer).exists()


# --- the subscription ----------------------------------------------------------------------


def current_subscription(organization: Organization) -> djstripe.Subscription | None:
    """The subscription that decides the plan: the newest live one, else the newest."""
    subscriptions = djstripe.Subscription.objects.filter(
        customer__subscriber=organization, livemode=settings.STRIPE_LIVE_MODE
    ).order_by("-created", "-djstripe_id")
    newest = None
    for subscription in subscriptions:
        if subscription.status in LIVE_STATUSES:
            return subscription
        newest = newest or subscription
    return newest


def change_plan(organization: Organization, plan: Plan) -> None:
    """Moves the current subscription to ``plan`` with proration (Checkout does not change
    an existing subscription)."""
    if not plan.stripe_price_id:
        raise PlanNotOnStripe(details={"plan": plan.code})
    subscription = _live_subscription(organization)
    base_prices = set(
        Plan.objects.exclude(stripe_price_id="").values_list("stripe_price_id", flat=True)
    )
    items = [
        {"id": item["id"], "price": plan.stripe_price_id}
        for item in subscription_items(subscription.stripe_data)
        if item["price"]["id"] in base_prices
    ] or [{"price": plan.stripe_price_id, "quantity": 1}]
    updated = stripe.Subscription.modify(
        subscription.id,
        api_key=api_key(),
        items=items,
        proration_behavior="create_prorations",
        metadata={"organization_id": organization.slug, "plan": plan.code},
    )
    follow_subscription(organization, updated["id"])


def cancel_subscription(organization: Organization, *, at_period_end: bool) -> None:
    subscription = _live_subscription(organization)
    key = api_key()
    if at_period_end:
        stripe.Subscription.modify(subscription.id, api_key=key, cancel_at_period_end=True)
    else:
        stripe.Subscription.cancel(subscription.id, api_key=key)
    follow_subscription(organization, subscription.id)


def resume_subscription(organization: Organization) -> None:
    """Undoes a cancellation at period end (before the period ends)."""
    subscription = _live_subscription(organization)
    stripe.Subscription.modify(subscription.id, api_key=api_key(), cancel_at_period_end=False)
    follow_subscription(organization, subscription.id)


def _live_subscription(organization: Organization) -> djstripe.Subscription:
    subscription = current_subscription(organization)
    if subscription is None or subscription.status not in LIVE_STATUSES:
        raise NoSubscription()
    return subscription


def subscription_items(data: dict) -> list[dict]:
    """The items of a subscription as Stripe sends it (none when it has none)."""
    return ((data or {}).get("items") or {}).get("data") or []


def follow_subscription(organization: Organization, subscription_id: str) -> Organization:
    """Re-fetches the subscription from Stripe under a lock on the organisation and makes
    the organisation's plan and status follow the current subscription."""
    key = api_key()
    with transaction.atomic():
        organization = lock_organization(organization.pk)
        data = stripe.Subscription.retrieve(subscription_id, api_key=key)
        djstripe.Subscription.sync_from_stripe_data(data, api_key=key)
        return _apply_subscription(organization)


def lock_organization(organization_id: int) -> Organization:
    """Serialises everything that follows Stripe for one organisation. FOR NO KEY UPDATE:
    it does not block the foreign-key checks of usage being recorded meanwhile."""
    return Organization.objects.select_for_update(no_key=True).get(pk=organization_id)


def _apply_subscription(organization: Organization) -> Organization:
    subscription = current_subscription(organization)
    data = subscription.stripe_data if subscription else {}
    status = data.get("status", "")
    plan = organization.plan
    if status in LIVE_STATUSES:
        prices = [item["price"]["id"] for item in subscription_items(data)]
        plan = Plan.objects.filter(stripe_price_id__in=prices).first() or plan
    elif status:
        plan = None  # ended: back to the default plan
    past_due_since = organization.past_due_since
    if status == SubscriptionStatus.PAST_DUE:
        past_due_since = past_due_since or timezone.now()
    else:
        past_due_since = None
    anchor = organization.billing_anchor
    if status in LIVE_STATUSES and data.get("billing_cycle_anchor"):
        anchor = datetime.fromtimestamp(int(data["billing_cycle_anchor"]), tz=UTC)
    elif status not in LIVE_STATUSES:
        anchor = None  # no subscription: calendar months again
    changed = (
        organization.plan_id != (plan.pk if plan else None)
        or organization.subscription_status != status
        or organization.past_due_since != past_due_since
        or organization.billing_anchor != anchor
    )
    if changed:
        logger.info(
            "Organisation %s follows its subscription: %s on %s",
            organization.slug, status or "none", plan.code if plan else "the default plan",
        )  # fmt: skip
        organization.plan = plan
        organization.subscription_status = status
        organization.past_due_since = past_due_since
        organization.billing_anchor = anchor
        organization.save(
            update_fields=["plan", "subscription_status", "past_due_since", "billing_anchor",
                           "updated_at"]
        )  # fmt: skip
    return organization


def subscription_summary(organization: Organization) -> dict:
    """What the pages and the API show of the subscription."""
    subscription = current_subscription(organization)
    if subscription is None:
        return {"status": "", "subscription_id": None}
    data = subscription.stripe_data or {}
    items = subscription_items(data)
    period_start = data.get("current_period_start") or (
        items[0].get("current_period_start") if items else None
    )
    period_end = data.get("current_period_end") or (
        items[0].get("current_period_end") if items else None
    )
    return {
        "subscription_id": subscription.id,
        "status": data.get("status", ""),
        "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
        "trial_end": data.get("trial_end"),
        "current_period_start": period_start,
        "current_period_end": period_end,
    }


def billing_period(organization: Organization, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the period ``at`` is billed in: the live subscription's current
    period, else the calendar month in the organisation's time zone."""
    summary = subscription_summary(organization)
    start, end = summary.get("current_period_start"), summary.get("current_period_end")
    if summary["status"] in LIVE_STATUSES and start and end:
        start = datetime.fromtimestamp(start, tz=UTC)
        end = datetime.fromtimestamp(end, tz=UTC)
        if start <= at < end:
            return start, end
    return organization.period_bounds(at, MONTH)


# --- reconciliation -----------------------------------------------------------------------


def reconcile() -> dict:
    """Re-syncs every organisation's customer, subscriptions and invoices from Stripe
    (dj-stripe's sync) and re-applies the subscription, so a missed webhook heals. Returns
    what it fixed: the organisations whose plan or status had drifted."""
    key = api_key()
    fixed, customers = [], 0
    recent_invoices = {"gte": int((timezone.now() - RECONCILE_INVOICE_DAYS).timestamp())}
    for customer in djstripe.Customer.objects.filter(
        subscriber__isnull=False, livemode=settings.STRIPE_LIVE_MODE
    ):
        customers += 1
        change = _resync(customer, key, recent_invoices)
        if change is not None:
            fixed.append(change)
    return {"customers": customers, "fixed": fixed}


def resync_organization(organization: Organization) -> dict | None:
    """``reconcile`` for one organisation (the admin's "re-sync from Stripe"): what it
    fixed, or None when nothing had drifted."""
    key = api_key()
    customer = customer_of(organization)
    if customer is None:
        return None
    recent_invoices = {"gte": int((timezone.now() - RECONCILE_INVOICE_DAYS).timestamp())}
    return _resync(customer, key, recent_invoices)


def _resync(customer, key: str, recent_invoices: dict) -> dict | None:
    # Fetched and stored under the organisation's lock, like every webhook's re-fetch, so
    # a newer state applied meanwhile is never overwritten by this one.
    with transaction.atomic():
        organization = lock_organization(customer.subscriber_id)
        before = (organization.plan_id, organization.subscription_status)
        djstripe.Customer.sync_from_stripe_data(
            stripe.Customer.retrieve(customer.id, api_key=key), api_key=key
        )
        for data in stripe.Subscription.list(
            api_key=key, customer=customer.id, status="all", limit=100
        ).auto_paging_iter():
            djstripe.Subscription.sync_from_stripe_data(data, api_key=key)
        for data in stripe.Invoice.list(
            api_key=key, customer=customer.id, created=recent_invoices, limit=100
        ).auto_paging_iter():
            djstripe.Invoice.sync_from_stripe_data(data, api_key=key)
        organization = _apply_subscription(organization)
        after = (organization.plan_id, organization.subscription_status)
    if before == after:
        return None
    return {"organization": organization.slug, "before": before, "after": after}
