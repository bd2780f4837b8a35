"""Plans and metered products mirrored to Stripe by ``sync_stripe_catalog``."""

from io import StringIO

import pytest
from django.core.management import call_command

from apps.pricing.demo import seed_catalog
from apps.pricing.models import Plan, Product
from apps.pricing.stripe_catalog import meter_unit_price

pytestmark = pytest.mark.django_db


def sync() -> str:
    out = StringIO()
    call_command("sync_stripe_catalog", stdout=out)
    return out.getvalue()


def test_every_active_plan_and_product_gets_its_stripe_objects_and_links(fake_stripe):
    seed_catalog()

    output = sync()

    for plan in Plan.objects.filter(is_active=True):
        price = fake_stripe.objects[plan.stripe_price_id]
        assert price["product"] == plan.stripe_product_id == f"bp_plan_{plan.code}"
        assert price["recurring"]["interval"] == plan.billing_interval
        assert price["unit_amount"] == int(plan.base_fee * 100)
    for product in Product.objects.filter(is_active=True):
        price = fake_stripe.objects[product.stripe_price_id]
        meter = fake_stripe.objects[product.stripe_meter_id]
        assert meter["event_name"] == product.stripe_meter_event_name
        assert price["recurring"] == {
            "interval": "month", "interval_count": 1, "meter": meter["id"],
            "trial_period_days": None, "usage_type": "metered",
        }  # fmt: skip
        assert price["unit_amount_decimal"] == "0.0001"  # a millionth of a dollar, in cents
    assert "[##############################]" in output  # the progress bar reached the end


def test_a_second_run_changes_nothing(fake_stripe):
    seed_catalog()
    sync()
    objects = len(fake_stripe.objects) - len(fake_stripe.events)
    links = list(Plan.objects.values_list("stripe_price_id", flat=True))
    requests_before = len(fake_stripe.requests)

    output = sync()

    assert "0 created, 0 updated" in output
    assert len(fake_stripe.objects) - len(fake_stripe.events) == objects
    writes = [r for r in fake_stripe.requests[requests_before:] if r[0] == "POST"]
    assert writes == []  # nothing created, nothing updated
    assert list(Plan.objects.values_list("stripe_price_id", flat=True)) == links


def test_a_new_base_fee_is_a_new_price(fake_stripe):
    plans = seed_catalog()
    sync()
    pro = Plan.objects.get(pk=plans["pro"].pk)
    old_price = pro.stripe_price_id
    pro.base_fee += 10
    pro.save()

    sync()

    pro.refresh_from_db()
    assert pro.stripe_price_id != old_price
    assert fake_stripe.objects[pro.stripe_price_id]["unit_amount"] == int(pro.base_fee * 100)


def test_without_stripe_keys_the_command_says_so(settings):
    settings.STRIPE_ENABLED = False
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not configured"):
        sync()


@pytest.mark.parametrize(("currency", "expected"), [("USD", "0.0001"), ("JPY", "0.000001")])
def test_a_meter_unit_is_a_millionth_of_the_currency_unit(currency, expected):
    assert meter_unit_price(currency) == expected


def test_a_renamed_plan_renames_its_stripe_product(fake_stripe):
    plans = seed_catalog()
    sync()
    Plan.objects.filter(pk=plans["pro"].pk).update(name="Professional")

    output = sync()

    assert "renamed" in output
    assert fake_stripe.objects["bp_plan_pro"]["name"] == "Professional plan"


def test_a_plan_in_another_currency_subscribes_with_metered_prices_in_its_currency(
    fake_stripe, organization
):
    from apps.customers import billing
    from tests.pricing.factories import PlanFactory
    from tests.stripe_webhooks import CHECKOUT_URLS, session_id

    seed_catalog()
    euro = PlanFactory(code="euro-pro", currency="EUR", base_fee=20)
    sync()
    euro.refresh_from_db()
    organization.currency = "EUR"
    organization.save()

    url = billing.checkout_subscription(organization, euro, **CHECKOUT_URLS)
    session = fake_stripe.complete_checkout(session_id(url))

    items = fake_stripe.objects[session["subscription"]]["items"]["data"]
    assert len(items) == 1 + Product.objects.filter(is_active=True).count()
    assert {item["price"]["currency"] for item in items} == {"eur"}
