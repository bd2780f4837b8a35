"""Price changes are new versions; history never changes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError

from apps.pricing import selectors
from apps.pricing.cost_engine import PricingModel
from apps.pricing.errors import PriceNotConfigured, PriceVersionOverlap
from apps.pricing.models import PriceRule
from apps.pricing.services import TierSpec, tiers_from_text
from tests.pricing.factories import PlanFactory, ProductFactory, price

pytestmark = pytest.mark.django_db

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUN = datetime(2026, 6, 1, tzinfo=UTC)


def cost_at(product, instant, plan=None, quantity="1000"):
    return selectors.quote(
        plan=plan, product=product, quantities={"units": D(quantity)}, at=instant
    ).total


def test_a_price_change_takes_effect_from_its_effective_from_and_keeps_earlier_prices():
    product = ProductFactory()
    price(product, unit_price="0.02", since=JAN)
    before_change = cost_at(product, datetime(2026, 3, 1, tzinfo=UTC))

    price(product, unit_price="0.01", since=JUN)

    assert cost_at(product, datetime(2026, 3, 1, tzinfo=UTC)) == before_change == D("20.00")
    assert cost_at(product, JUN - timedelta(microseconds=1)) == D("20.00")
    assert cost_at(product, JUN) == D("10.00")
    assert cost_at(product, datetime(2026, 12, 1, tzinfo=UTC)) == D("10.00")


def test_the_previous_version_ends_where_the_new_one_starts():
    product = ProductFactory()
    first = price(product, unit_price="0.02", since=JAN)
    second = price(product, unit_price="0.01", since=JUN)

    first.refresh_from_db()
    assert first.effective_to == JUN
    assert second.effective_to is None
    assert first.unit_price == D("0.02")  # the old price itself is untouched


def test_a_version_overlapping_a_scheduled_one_is_rejected():
    product = ProductFactory()
    price(product, unit_price="0.02", since=JAN)
    price(product, unit_price="0.01", since=JUN)  # scheduled after January's

    with pytest.raises(PriceVersionOverlap):
        # An open-ended March version would run into June's.
        price(product, unit_price="0.015", since=datetime(2026, 3, 1, tzinfo=UTC))
    assert PriceRule.objects.filter(product=product).count() == 2


def test_a_second_version_at_the_same_instant_is_rejected():
    product = ProductFactory()
    price(product, unit_price="0.02", since=JAN)

    with pytest.raises(PriceVersionOverlap):
        price(product, unit_price="0.03", since=JAN)


def test_a_bounded_version_must_fit_where_no_other_version_is_in_force():
    product = ProductFactory()
    price(product, unit_price="0.01", since=JUN)
    promo_start, promo_end = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)

    with pytest.raises(PriceVersionOverlap):
        price(product, unit_price="0.005", since=promo_start, effective_to=promo_end)

    price(product, unit_price="0.03", since=JAN, effective_to=JUN)  # the gap before June
    assert cost_at(product, datetime(2026, 2, 1, tzinfo=UTC)) == D("30.00")
    assert cost_at(product, JUN) == D("10.00")


def test_before_any_version_the_price_is_not_configured():
    product = ProductFactory()
    price(product, since=JUN)

    with pytest.raises(PriceNotConfigured):
        cost_at(product, JAN)


def test_a_plan_overrides_the_catalog_and_falls_back_to_it_elsewhere():
    product = ProductFactory(dimensions=["input_tokens", "output_tokens"])
    plan = PlanFactory()
    price(product, dimension="input_tokens", unit_price="0.002")
    price(product, dimension="output_tokens", unit_price="0.004")
    price(product, plan=plan, dimension="input_tokens", unit_price="0.001")

    quote = selectors.quote(
        plan=plan,
        product=product,
        quantities={"input_tokens": D(100), "output_tokens": D(100)},
        at=JUN,
    )

    amounts = {line.dimension: line.amount for line in quote.breakdown.lines}
    assert amounts == {"input_tokens": D("0.1"), "output_tokens": D("0.4")}


def test_catalog_prices_do_not_silently_apply_to_a_plan_in_another_currency():
    product = ProductFactory()
    price(product)
    euro_plan = PlanFactory(currency="EUR")

    with pytest.raises(PriceNotConfigured):
        selectors.quote(plan=euro_plan, product=product, quantities={"units": D(1)}, at=JUN)


def test_an_unknown_dimension_or_inconsistent_tiers_are_refused():
    product = ProductFactory()
    with pytest.raises(ValidationError):
        price(product, dimension="output_tokens")
    with pytest.raises(ValidationError):
        price(
            product,
            pricing_model=PricingModel.GRADUATED,
            tiers=[TierSpec(D(100), D(1)), TierSpec(D(50), D(1)), TierSpec(None, D(1))],
        )
    with pytest.raises(ValidationError):
        price(product, pricing_model=PricingModel.PACKAGE, package_size=None)
    assert not PriceRule.objects.exists()


def test_cached_price_sheets_follow_a_price_change():
    product = ProductFactory()
    price(product, unit_price="0.02", since=JAN)
    assert cost_at(product, JUN) == D("20.00")  # now cached

    price(product, unit_price="0.01", since=JUN)

    assert cost_at(product, JUN) == D("10.00")


def test_tiers_read_from_and_written_to_the_price_sheet_format():
    tiers = tiers_from_text("1000:0.002|10000:0.0015:5|inf:0.001")
    assert tiers == [
        TierSpec(D(1000), D("0.002")),
        TierSpec(D(10000), D("0.0015"), D(5)),
        TierSpec(None, D("0.001")),
    ]
    with pytest.raises(ValidationError):
        tiers_from_text("1000-0.002")
    with pytest.raises(ValidationError):
        tiers_from_text("abc:0.002")
