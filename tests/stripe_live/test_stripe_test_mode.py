"""The Stripe flows against real Stripe test mode: opt-in, with a test secret key.

    STRIPE_TEST_SECRET_KEY=sk_test_... make test PYTEST_ARGS="-m stripe_live"

Skipped without the key (and where api.stripe.com cannot be reached). It creates test-mode
products, prices, meters, a customer and its subscription in the account, and deletes the
customer (with its subscriptions) at the end; the catalog stays for the next run, which
then changes nothing. Webhooks cannot reach a test machine, so the portal follows Stripe
here the way it heals a missed webhook: by re-fetching (``follow_subscription`` after each
change, and the daily ``reconcile``).
"""

import os
from decimal import Decimal
from io import StringIO

import pytest
import stripe
from django.core.management import call_command

from apps.customers import billing
from apps.pricing.demo import seed_catalog
from apps.usage import ingestion, stripe_usage
from apps.usage.models import StripeUsageReport
from tests.customers.factories import OrganizationFactory

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not KEY.startswith("sk_test_"),
        reason="set STRIPE_TEST_SECRET_KEY=sk_test_... to run the flows against Stripe test mode",
    ),
]


@pytest.fixture
def live(settings):
    settings.STRIPE_TEST_SECRET_KEY = KEY
    settings.STRIPE_LIVE_MODE = False
    settings.STRIPE_ENABLED = True
    stripe.api_base = "https://api.stripe.com"
    plans = seed_catalog()
    first = StringIO()
    call_command("sync_stripe_catalog", stdout=first)
    for plan in plans.values():
        plan.refresh_from_db()
    return plans, first.getvalue()


@pytest.fixture
def organization(live):
    organization = OrganizationFactory(slug="stripe-test-mode", plan=live[0]["free"])
    yield organization
    customer = billing.customer_of(organization)
    if customer is not None:
        stripe.Customer.delete(customer.id, api_key=KEY)


def test_the_catalog_sync_changes_nothing_the_second_time(live):
    again = StringIO()
    call_command("sync_stripe_catalog", stdout=again)
    assert "0 created, 0 updated" in again.getvalue()


def test_customer_subscription_plan_change_cancel_and_resume(live, organization):
    plans, _ = live
    pro, enterprise = plans["pro"], plans["enterprise"]

    customer = billing.ensure_customer(organization)
    assert stripe.Customer.retrieve(customer.id, api_key=KEY)["email"] == organization.billing_email
    url = billing.checkout_subscription(
        organization, pro, success_url="https://example.com/ok", cancel_url="https://example.com/no"
    )
    assert url.startswith("https://checkout.stripe.com/")

    # Checkout needs a person at a browser: the subscription is made as Checkout would make
    # it, with Stripe's test card.
    method = stripe.PaymentMethod.attach("pm_card_visa", customer=customer.id, api_key=KEY)
    stripe.Customer.modify(
        customer.id, invoice_settings={"default_payment_method": method["id"]}, api_key=KEY
    )
    subscription = stripe.Subscription.create(
        customer=customer.id,
        items=[{"price": pro.stripe_price_id}]
        + [{"price": price} for price in billing.metered_price_ids(pro.currency)],
        trial_period_days=pro.trial_days,
        metadata={"organization_id": organization.slug, "plan": pro.code},
        api_key=KEY,
    )
    billing.follow_subscription(organization, subscription["id"])
    organization.refresh_from_db()
    assert organization.plan == pro and organization.subscription_status == "trialing"

    billing.change_plan(organization, enterprise)
    organization.refresh_from_db()
    assert organization.plan == enterprise

    billing.cancel_subscription(organization, at_period_end=True)
    assert billing.subscription_summary(organization)["cancel_at_period_end"] is True
    billing.resume_subscription(organization)
    assert billing.subscription_summary(organization)["cancel_at_period_end"] is False

    # A change made on Stripe's side only (a missed webhook) is healed by reconciliation.
    stripe.Subscription.cancel(subscription["id"], api_key=KEY)
    fixed = billing.reconcile()
    organization.refresh_from_db()
    assert organization.subscription_status == "canceled" and organization.plan is None
    assert [f["organization"] for f in fixed["fixed"]] == [organization.slug]


def test_usage_is_reported_to_the_meters_once(live, organization):
    plans, _ = live
    customer = billing.ensure_customer(organization)
    organization.plan = plans["free"]
    organization.save()
    outcomes = ingestion.ingest(
        organization=organization,
        events=[
            ingestion.EventInput(
                idempotency_key=f"live-{n}", product_id="agent-run", fingerprint=f"live-{n}",
                usage_amount=Decimal(3),
            )
            for n in range(5)
        ],
    )  # fmt: skip
    assert all(o.status == o.ACCEPTED for o in outcomes)

    first = stripe_usage.report_all()
    second = stripe_usage.report_all()
    assert first.events >= 1 and second.events == 0
    reports = StripeUsageReport.objects.filter(organization=organization)
    assert {r.stripe_customer_id for r in reports} == {customer.id}
