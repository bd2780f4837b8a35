"""The organisation's Stripe side through the real stripe SDK, dj-stripe's real webhook view
and signed events, against the Stripe of ``tests/fake_stripe.py``."""

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from djstripe.models import Event, WebhookEventTrigger

from apps.customers import billing, wallets
from apps.customers.errors import PlanNotOnStripe
from apps.customers.models import Organization
from apps.pricing.demo import seed_catalog
from tests.stripe_webhooks import (
    deliver,
    deliver_processed,
    session_id,
    stored_delivery,
)

pytestmark = pytest.mark.django_db

URLS = {
    "success_url": "https://billing.example.com/ok",
    "cancel_url": "https://billing.example.com/no",
}


@pytest.fixture
def plans(fake_stripe):
    plans = seed_catalog()
    call_command("sync_stripe_catalog", stdout=StringIO())
    for plan in plans.values():
        plan.refresh_from_db()
    return plans


def deliver_all(client, endpoint, fake, since: int = 0) -> int:
    """Delivers every event the fake emitted from index ``since``; returns the next index."""
    deliver_processed(client, endpoint, fake.events[since:])
    return len(fake.events)


# --- the customer ------------------------------------------------------------------------


def test_an_organization_gets_one_stripe_customer_when_it_first_needs_one(
    fake_stripe, organization
):
    first = billing.ensure_customer(organization)
    again = billing.ensure_customer(organization)

    assert first.pk == again.pk
    customers = [o for o in fake_stripe.objects.values() if o["object"] == "customer"]
    assert len(customers) == 1
    assert customers[0]["email"] == organization.billing_email
    assert customers[0]["name"] == organization.name
    assert customers[0]["metadata"]["organization_id"] == organization.slug


def test_name_and_billing_email_are_kept_in_sync(
    fake_stripe, organization, django_capture_on_commit_callbacks
):
    customer = billing.ensure_customer(organization)

    with django_capture_on_commit_callbacks(execute=True):
        organization.name, organization.billing_email = "Renamed Ltd", "ap@renamed.example"
        organization.save()

    remote = fake_stripe.objects[customer.id]
    assert (remote["name"], remote["email"]) == ("Renamed Ltd", "ap@renamed.example")


# --- webhooks: what is refused -----------------------------------------------------------------


@pytest.fixture
def customer_event(fake_stripe, organization):
    billing.ensure_customer(organization)
    return fake_stripe.events_of("customer.created")[0]


def test_a_signed_event_is_verified_stored_and_processed(client, webhook_endpoint, customer_event):
    response = deliver(client, webhook_endpoint, customer_event)

    assert response.status_code == 200
    trigger = WebhookEventTrigger.objects.get()
    assert trigger.valid and trigger.processed
    assert Event.objects.filter(id=customer_event["id"]).exists()


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("wrong secret", {"secret": "whsec_not_the_endpoints"}),
        ("older than the tolerance", {"timestamp": -3600}),
        ("dated in the future", {"timestamp": +3600}),
    ],
)
def test_a_delivery_that_fails_verification_is_400_and_changes_nothing(
    client, webhook_endpoint, customer_event, case, kwargs
):
    if "timestamp" in kwargs:  # an offset from now
        kwargs = {"timestamp": int(time.time()) + kwargs["timestamp"]}
    response = deliver(client, webhook_endpoint, customer_event, **kwargs)

    assert response.status_code == 400, case
    assert not Event.objects.exists()
    assert not WebhookEventTrigger.objects.filter(processed=True).exists()


def test_a_body_changed_by_one_byte_is_400(client, webhook_endpoint, customer_event):
    payload = json.dumps(customer_event)
    tampered = payload.replace('"livemode": false', '"livemode": false ', 1)

    response = deliver(client, webhook_endpoint, customer_event, body=tampered)

    assert response.status_code == 400
    assert not Event.objects.exists()


def test_a_test_mode_event_at_a_live_endpoint_is_400(client, webhook_endpoint, customer_event):
    webhook_endpoint.livemode = True
    webhook_endpoint.save()

    response = deliver(client, webhook_endpoint, customer_event)

    assert response.status_code == 400
    assert not Event.objects.exists()


def test_a_missing_signature_or_unknown_endpoint_is_refused(client, webhook_endpoint):
    missing = client.post(
        f"/stripe/webhook/{webhook_endpoint.djstripe_uuid}/",
        data="{}",
        content_type="application/json",
    )
    unknown = client.post(
        "/stripe/webhook/00000000-0000-0000-0000-000000000000/",
        data="{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )  # fmt: skip

    assert missing.status_code == 400
    assert unknown.status_code == 404


def test_an_unknown_event_type_is_accepted_and_ignored(client, webhook_endpoint, fake_stripe):
    event = fake_stripe.emit("radar.early_fraud_warning.created", {"id": "issfr_1", "object": "x"})

    response = deliver(client, webhook_endpoint, event)

    assert response.status_code == 200
    assert Event.objects.get(id=event["id"]).type == "radar.early_fraud_warning.created"


def test_a_subscription_of_an_unknown_customer_changes_no_organization(
    client, webhook_endpoint, fake_stripe, plans, organization
):
    stranger = fake_stripe.create_customer({"email": "someone@else.example"})
    fake_stripe.create_subscription(stranger["id"], [plans["pro"].stripe_price_id])

    deliver_processed(client, webhook_endpoint, fake_stripe.events[-1:])

    organization.refresh_from_db()
    assert organization.plan_id is None and organization.subscription_status == ""


def test_an_event_naming_an_object_stripe_no_longer_has_is_ignored_not_retried(
    client, webhook_endpoint, fake_stripe, customer_event
):
    from djstripe.models import Customer

    customer_id = customer_event["data"]["object"]["id"]
    Customer.objects.filter(id=customer_id).delete()
    del fake_stripe.objects[customer_id]

    response = deliver(client, webhook_endpoint, customer_event)

    assert response.status_code == 200
    trigger = WebhookEventTrigger.objects.get()
    assert trigger.processed and trigger.exception.startswith("ignored")  # not retried
    assert not Customer.objects.filter(id=customer_id).exists()


# --- top-ups ---------------------------------------------------------------------------------


def test_a_top_up_credits_the_wallet_exactly_once_when_its_event_arrives_three_times(
    client, webhook_endpoint, fake_stripe, organization
):
    url = billing.checkout_top_up(organization, Decimal("25.00"), **URLS)
    fake_stripe.complete_checkout(session_id(url))
    completed = fake_stripe.events_of("checkout.session.completed")[0]

    deliver_processed(client, webhook_endpoint, [completed] * 3)

    assert wallets.wallet_balance(organization) == Decimal("25.00")
    assert organization.wallet.entries.count() == 1
    assert Event.objects.filter(id=completed["id"]).count() == 1


def test_the_same_session_in_two_different_events_still_credits_once(
    client, webhook_endpoint, fake_stripe, organization
):
    url = billing.checkout_top_up(organization, Decimal("10.00"), **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    late_twin = fake_stripe.emit("checkout.session.async_payment_succeeded", session)

    completed = fake_stripe.events_of("checkout.session.completed")[0]
    deliver_processed(client, webhook_endpoint, [completed, late_twin])

    assert wallets.wallet_balance(organization) == Decimal("10.00")


def test_a_refunded_top_up_takes_the_refund_back_out_of_the_wallet_once(
    client, webhook_endpoint, fake_stripe, organization
):
    url = billing.checkout_top_up(organization, Decimal("30.00"), **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    deliver_all(client, webhook_endpoint, fake_stripe)
    charge = fake_stripe.objects[fake_stripe.objects[session["payment_intent"]]["latest_charge"]]

    fake_stripe.refund(charge["id"], amount=1000)
    refunded = fake_stripe.events_of("charge.refunded")[-1]
    deliver_processed(client, webhook_endpoint, [refunded, refunded])

    assert wallets.wallet_balance(organization) == Decimal("20.00")


# --- plans -----------------------------------------------------------------------------------


def test_checkout_for_a_plan_without_a_stripe_price_is_a_clear_error(fake_stripe, organization):
    plan = seed_catalog()["pro"]  # never synced to Stripe

    with pytest.raises(PlanNotOnStripe) as raised:
        billing.checkout_subscription(organization, plan, **URLS)

    assert raised.value.code == "plan_not_on_stripe"
    assert raised.value.details == {"plan": plan.code}


def test_subscribe_trial_change_plan_and_cancel_at_period_end(
    client, webhook_endpoint, fake_stripe, plans, organization
):
    pro, enterprise = plans["pro"], plans["enterprise"]
    seen = 0

    # Subscribe through Checkout, with the plan's trial.
    url = billing.checkout_subscription(organization, pro, **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    seen = deliver_all(client, webhook_endpoint, fake_stripe, seen)
    organization.refresh_from_db()
    assert organization.plan == pro
    assert pro.trial_days and organization.subscription_status == "trialing"
    assert session["subscription"] == billing.current_subscription(organization).id
    # Its months now follow the subscription's billing cycle.
    anchor = fake_stripe.objects[session["subscription"]]["billing_cycle_anchor"]
    assert organization.billing_anchor == datetime.fromtimestamp(anchor, tz=UTC)
    items = fake_stripe.objects[session["subscription"]]["items"]["data"]
    metered = billing.metered_price_ids(pro.currency)
    assert metered  # the demo catalog's products are metered on Stripe
    assert {item["price"]["id"] for item in items} == {pro.stripe_price_id, *metered}

    # The trial ends.
    fake_stripe.end_trial(session["subscription"])
    seen = deliver_all(client, webhook_endpoint, fake_stripe, seen)
    organization.refresh_from_db()
    assert organization.subscription_status == "active"

    # Change plan: a direct update with proration (Checkout does not change a subscription).
    billing.change_plan(organization, enterprise)
    organization.refresh_from_db()
    assert organization.plan == enterprise
    items = fake_stripe.objects[session["subscription"]]["items"]["data"]
    assert enterprise.stripe_price_id in [item["price"]["id"] for item in items]
    assert pro.stripe_price_id not in [item["price"]["id"] for item in items]
    seen = deliver_all(client, webhook_endpoint, fake_stripe, seen)

    # Cancel at period end: still on the plan until then, resumable.
    billing.cancel_subscription(organization, at_period_end=True)
    seen = deliver_all(client, webhook_endpoint, fake_stripe, seen)
    organization.refresh_from_db()
    assert organization.plan == enterprise
    assert billing.subscription_summary(organization)["cancel_at_period_end"] is True

    fake_stripe.end_period(session["subscription"])
    deliver_all(client, webhook_endpoint, fake_stripe, seen)
    organization.refresh_from_db()
    assert organization.subscription_status == "canceled"
    assert organization.plan is None  # back on the default plan
    assert organization.billing_anchor is None  # and on calendar months


def test_an_older_update_delivered_after_a_newer_one_does_not_roll_the_plan_back(
    client, webhook_endpoint, fake_stripe, plans, organization
):
    url = billing.checkout_subscription(organization, plans["pro"], **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    seen = deliver_all(client, webhook_endpoint, fake_stripe)
    subscription = fake_stripe.objects[session["subscription"]]
    item = subscription["items"]["data"][0]["id"]
    fake_stripe.update_subscription(
        subscription["id"], {"items": [{"id": item, "price": plans["enterprise"].stripe_price_id}]}
    )
    to_enterprise = fake_stripe.events[-1]
    fake_stripe.update_subscription(
        subscription["id"], {"items": [{"id": item, "price": plans["free"].stripe_price_id}]}
    )
    to_free = fake_stripe.events[-1]
    assert seen < len(fake_stripe.events)

    deliver_processed(
        client, webhook_endpoint, [to_free, to_enterprise, to_free]
    )  # the older one late and stale, then the newer again

    organization.refresh_from_db()
    assert organization.plan == plans["free"]


def test_resume_undoes_a_cancellation_at_period_end(fake_stripe, plans, organization):
    url = billing.checkout_subscription(organization, plans["pro"], **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    billing.follow_subscription(organization, session["subscription"])
    billing.cancel_subscription(organization, at_period_end=True)

    billing.resume_subscription(organization)

    assert billing.subscription_summary(organization)["cancel_at_period_end"] is False
    assert fake_stripe.objects[session["subscription"]]["cancel_at_period_end"] is False


def test_a_failed_payment_marks_the_organization_past_due(
    client, webhook_endpoint, fake_stripe, plans, organization
):
    url = billing.checkout_subscription(organization, plans["pro"], **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    seen = deliver_all(client, webhook_endpoint, fake_stripe)

    fake_stripe.fail_payment(session["subscription"])
    deliver_all(client, webhook_endpoint, fake_stripe, seen)

    organization.refresh_from_db()
    assert organization.subscription_status == "past_due"
    assert organization.past_due_since is not None
    assert organization.plan == plans["pro"]  # the grace period keeps the plan


def test_the_customer_portal_link_comes_from_stripe(fake_stripe, organization):
    url = billing.customer_portal_url(organization, return_url="https://billing.example.com/")

    assert url.startswith("https://billing.stripe.com/p/session/")


def test_without_stripe_keys_payments_say_they_are_not_configured(settings, organization):
    from apps.core.stripe_gateway import StripeNotConfigured

    settings.STRIPE_ENABLED = False
    with pytest.raises(StripeNotConfigured):
        billing.checkout_top_up(organization, Decimal("5"), **URLS)
    assert Organization.objects.get(pk=organization.pk).subscription_status == ""


# --- reconciliation ----------------------------------------------------------------------


def test_reconciliation_heals_a_missed_webhook_and_says_what_it_fixed(
    fake_stripe, plans, organization
):
    from apps.customers.tasks import reconcile_stripe

    url = billing.checkout_subscription(organization, plans["pro"], **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    billing.follow_subscription(organization, session["subscription"])
    item = fake_stripe.objects[session["subscription"]]["items"]["data"][0]["id"]
    # Changed in Stripe's dashboard; the webhook never arrives.
    fake_stripe.update_subscription(
        session["subscription"],
        {"items": [{"id": item, "price": plans["enterprise"].stripe_price_id}]},
    )

    result = reconcile_stripe.delay().get()
    again = reconcile_stripe.delay().get()

    organization.refresh_from_db()
    assert organization.plan == plans["enterprise"]
    assert [fix["organization"] for fix in result["fixed"]] == [organization.slug]
    assert again["fixed"] == []


def test_a_pending_delivery_is_enqueued_by_the_sweep(client, webhook_endpoint, customer_event):
    from datetime import timedelta

    from django.utils import timezone

    from apps.customers.webhooks import process_pending_webhooks

    trigger = stored_delivery(webhook_endpoint, customer_event)
    WebhookEventTrigger.objects.filter(pk=trigger.pk).update(
        created=timezone.now() - timedelta(minutes=5)
    )

    assert process_pending_webhooks.delay().get() == 1

    trigger.refresh_from_db()
    assert trigger.processed
    assert process_pending_webhooks.delay().get() == 0


def test_cancelling_now_ends_the_subscription_at_once(fake_stripe, plans, organization):
    url = billing.checkout_subscription(organization, plans["pro"], **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    billing.follow_subscription(organization, session["subscription"])

    billing.cancel_subscription(organization, at_period_end=False)

    organization.refresh_from_db()
    assert fake_stripe.objects[session["subscription"]]["status"] == "canceled"
    assert organization.subscription_status == "canceled"
    assert organization.plan is None


def test_past_due_beyond_the_grace_period_refuses_charges_and_fails_budgets_closed(
    api_client, client, webhook_endpoint, fake_stripe, plans, organization, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from apps.customers.services import issue_api_key
    from tests.http import bearer, error_code

    url = billing.checkout_subscription(organization, plans["pro"], **URLS)
    session = fake_stripe.complete_checkout(session_id(url))
    seen = deliver_all(client, webhook_endpoint, fake_stripe)
    fake_stripe.fail_payment(session["subscription"])
    deliver_all(client, webhook_endpoint, fake_stripe, seen)
    key = issue_api_key(name="svc", organization=organization).raw_key
    usage = {"product_id": "gpt-4o-mini", "usage_details": {"input_tokens": 5_000_000}}

    within_grace = api_client.post("/api/v1/usage/record", {**usage, "event_id": "a"},
                                   format="json", **bearer(key))  # fmt: skip
    Organization.objects.filter(pk=organization.pk).update(
        past_due_since=timezone.now() - timedelta(days=settings.STRIPE_PAST_DUE_GRACE_DAYS)
    )
    organization.refresh_from_db()
    organization.save()  # what a webhook's save does: every process sees it
    after_grace = api_client.post("/api/v1/usage/record", {**usage, "event_id": "b"},
                                  format="json", **bearer(key))  # fmt: skip
    check = api_client.post("/api/v1/budgets/check", usage, format="json", **bearer(key))

    assert within_grace.status_code == 201
    assert within_grace.json()["billing_method"] == "payment_charge"
    assert after_grace.status_code == 402
    assert error_code(after_grace) == "subscription_past_due"
    assert check.json()["allowed"] is False
