"""The cost engine: worked examples from public pricing docs, then properties."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.pricing import cost_engine as engine
from apps.pricing.cost_engine import PricingModel, Terms, Tier

# --- worked examples ----------------------------------------------------------------------

# Stripe, "Set up tiered pricing" (docs.stripe.com/subscriptions/pricing-models/tiered-pricing):
# Typographic sells fonts at 1-5: 7 USD, 6-10: 6.50 USD, 11+: 6 USD.
TYPOGRAPHIC = (Tier(D(5), D("7")), Tier(D(10), D("6.5")), Tier(None, D("6")))


@pytest.mark.parametrize(
    ("fonts", "total"),
    [(1, "7"), (5, "35"), (6, "39"), (20, "120"), (25, "150")],
)
def test_stripe_volume_example_gives_the_published_totals(fonts, total):
    assert engine.volume_total(D(fonts), TYPOGRAPHIC) == D(total)


@pytest.mark.parametrize(
    ("fonts", "total"),
    # Graduated: each font at the price of the tier it falls in (5 x 7 + 1 x 6.50 = 41.50 ...).
    [(1, "7"), (5, "35"), (6, "41.50"), (20, "127.50"), (25, "157.50")],
)
def test_stripe_graduated_example_gives_the_published_totals(fonts, total):
    assert engine.graduated_total(D(fonts), TYPOGRAPHIC) == D(total)


# Lago, "Volume" charge model (getlago.com/docs/guide/plans/charges/charge-models/volume):
# 65,000 API calls cost 65,000 x $0.0006 + $10 = $49.
LAGO_VOLUME = (
    Tier(D(10_000), D("0.0010"), D(10)),
    Tier(D(50_000), D("0.0008"), D(10)),
    Tier(D(100_000), D("0.0006"), D(10)),
    Tier(None, D("0.0004"), D(10)),
)


def test_lago_volume_example_gives_the_published_total():
    assert engine.volume_total(D(65_000), LAGO_VOLUME) == D(49)


# Lago, "Graduated" charge model (getlago.com/docs/.../graduated): $1 per unit for the first
# 100 units, $0.50 for the next 100, $0.10 beyond: 250 units = 100 + 50 + 5 = $155.
LAGO_GRADUATED = (Tier(D(100), D(1)), Tier(D(200), D("0.50")), Tier(None, D("0.10")))


def test_lago_graduated_example():
    assert engine.graduated_total(D(250), LAGO_GRADUATED) == D(155)


# Zuplo, "Pricing models" (zuplo.com/docs/articles/monetization/pricing-models): tiers
# 0-1,000 $0.10, 1,001-10,000 $0.05, 10,001+ $0.01; 15,000 units: graduated $600, volume $150.
ZUPLO = (Tier(D(1000), D("0.10")), Tier(D(10_000), D("0.05")), Tier(None, D("0.01")))


def test_zuplo_graduated_and_volume_examples():
    assert engine.graduated_total(D(15_000), ZUPLO) == D(600)
    assert engine.volume_total(D(15_000), ZUPLO) == D(150)


def test_package_pricing_charges_every_started_package():
    # 4,500 calls in packages of 1,000 at $1.00: 5 packages = $5 (Flexprice's example).
    assert engine.package_total(D(4500), D(1000), D("1.00")) == D(5)
    assert engine.package_total(D(4000), D(1000), D("1.00")) == D(4)
    assert engine.package_total(D(0), D(1000), D("1.00")) == D(0)


def test_tiny_per_token_prices_keep_full_precision():
    cost = engine.price_event(
        terms=Terms(PricingModel.PER_UNIT, unit_price=D("0.0000025")),
        dimension="input_tokens",
        quantity=D(1234),
    )
    assert cost.amount == D("0.0030850")
    assert isinstance(cost.amount, D)


def test_included_units_cost_nothing_and_are_not_priced_by_the_rule():
    cost = engine.price_event(
        terms=Terms(PricingModel.PER_UNIT, unit_price=D("0.01")),
        dimension="units",
        quantity=D(100),
        included=D(30),
    )
    assert cost.included_quantity == D(30)
    assert cost.billable_quantity == D(70)
    assert cost.amount == D("0.70")


def test_a_free_allowance_takes_the_periods_first_units():
    terms = Terms(PricingModel.PER_UNIT, unit_price=D(2), free_allowance=D(10))

    first = engine.price_event(terms=terms, dimension="units", quantity=D(8))
    second = engine.price_event(terms=terms, dimension="units", quantity=D(5), period_to_date=D(8))

    assert (first.free_quantity, first.amount) == (D(8), D(0))
    assert (second.free_quantity, second.billable_quantity, second.amount) == (D(2), D(3), D(6))


def test_an_event_crossing_a_graduated_tier_pays_each_part_at_its_tier():
    terms = Terms(PricingModel.GRADUATED, tiers=LAGO_GRADUATED)

    cost = engine.price_event(terms=terms, dimension="units", quantity=D(20), period_to_date=D(90))

    # 10 units at $1 + 10 units at $0.50
    assert cost.amount == D(15)
    assert cost.unit_price == D("0.75")


def test_a_volume_threshold_crossing_never_makes_an_event_negative():
    terms = Terms(PricingModel.VOLUME, tiers=(Tier(D(100), D(1)), Tier(None, D("0.5"))))

    cost = engine.price_event(terms=terms, dimension="units", quantity=D(1), period_to_date=D(100))

    assert cost.amount == D(0)


def test_minimum_charge_true_up():
    assert engine.minimum_true_up(D("3.20"), D(10)) == D("6.80")
    assert engine.minimum_true_up(D(12), D(10)) == D(0)


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        (D("1.005"), "USD", D("1.01")),
        (D("1.0049999"), "USD", D("1.00")),
        (D("2.5"), "JPY", D("3")),
        (D("0.0005"), "BHD", D("0.001")),
        (D("-1.005"), "EUR", D("-1.01")),
    ],
)
def test_round_money_is_half_up_to_the_currencys_minor_unit(amount, currency, rounded):
    assert engine.round_money(amount, currency) == rounded
    assert engine.round_money(amount, currency).as_tuple().exponent == rounded.as_tuple().exponent


def test_minor_units_for_stripe():
    assert engine.to_minor_units(D("12.345"), "USD") == 1235
    assert engine.to_minor_units(D("1234"), "JPY") == 1234
    assert engine.to_minor_units(D("1.2345"), "KWD") == 1235


def test_amount_formatting_keeps_sub_cent_precision_and_minor_digits():
    assert engine.format_amount(D("2"), "USD") == "2.00"
    assert engine.format_amount(D("2.000000"), "USD") == "2.00"
    assert engine.format_amount(D("0.0000125"), "USD") == "0.0000125"
    assert engine.format_amount(D("7"), "JPY") == "7"


@pytest.mark.parametrize(
    "tiers",
    [
        (),
        (Tier(D(10), D(1)),),
        (Tier(None, D(1)), Tier(D(10), D(1))),
        (Tier(D(10), D(1)), Tier(D(5), D(1)), Tier(None, D(1))),
        (Tier(D(0), D(1)), Tier(None, D(1))),
        (Tier(D(10), D(-1)), Tier(None, D(1))),
    ],
)
def test_tiers_must_be_ascending_contiguous_and_open_ended(tiers):
    with pytest.raises(engine.InvalidTerms):
        Terms(PricingModel.GRADUATED, tiers=tiers)


def test_float_quantities_are_refused():
    with pytest.raises(TypeError):
        engine.price_event(
            terms=Terms(PricingModel.PER_UNIT, unit_price=D(1)), dimension="u", quantity=1.5
        )


# --- properties ---------------------------------------------------------------------------

quantities = st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False)
prices = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False)


@st.composite
def tier_lists(draw):
    count = draw(st.integers(min_value=1, max_value=5))
    bounds = sorted(
        draw(
            st.sets(
                st.decimals(min_value=1, max_value=10**6, places=0),
                min_size=count - 1,
                max_size=count - 1,
            )
        )
    )
    tiers = [Tier(bound, draw(prices), draw(st.sampled_from([D(0), D(5)]))) for bound in bounds]
    tiers.append(Tier(None, draw(prices), draw(st.sampled_from([D(0), D(5)]))))
    return tuple(tiers)


@given(quantity=quantities, tiers=tier_lists())
def test_graduated_total_equals_the_sum_of_its_tier_pieces(quantity, tiers):
    pieces = engine.graduated_pieces(quantity, tiers)
    assert sum(units for units, _ in pieces) == quantity
    assert engine.graduated_total(quantity, tiers) == sum(amount for _, amount in pieces)
    lower = D(0)
    for (units, amount), tier in zip(pieces, tiers, strict=True):
        if units:
            assert amount == units * tier.unit_price + tier.flat_fee
        upper = tier.up_to if tier.up_to is not None else quantity
        assert units <= max(D(0), upper - lower)
        lower = tier.up_to if tier.up_to is not None else lower


@given(a=quantities, b=quantities, tiers=tier_lists())
def test_volume_price_is_piecewise_constant_per_unit(a, b, tiers):
    # Two quantities in the same tier pay the same price per unit.
    tier_a, tier_b = engine.volume_tier(a, tiers), engine.volume_tier(b, tiers)
    if tier_a == tier_b and a > 0 and b > 0:
        per_unit_a = (engine.volume_total(a, tiers) - tier_a.flat_fee) / a
        per_unit_b = (engine.volume_total(b, tiers) - tier_b.flat_fee) / b
        assert per_unit_a == per_unit_b == tier_a.unit_price


@given(a=quantities, b=quantities, price=prices)
def test_per_unit_pricing_is_linear(a, b, price):
    terms = Terms(PricingModel.PER_UNIT, unit_price=price)
    assert engine.period_total(terms, a + b) == engine.period_total(terms, a) + engine.period_total(
        terms, b
    )
    assert engine.period_total(terms, a * 3) == 3 * engine.period_total(terms, a)


@given(
    quantity=quantities,
    size=st.decimals(min_value=1, max_value=10**5, places=0),
    price=prices,
)
def test_package_pricing_rounds_up(quantity, size, price):
    total = engine.package_total(quantity, size, price)
    packages = engine.package_count(quantity, size)
    assert total == packages * price
    assert packages * size >= quantity
    assert (packages - 1) * size < quantity or quantity == 0


terms_strategy = st.one_of(
    st.builds(
        Terms,
        model=st.just(PricingModel.PER_UNIT),
        unit_price=prices,
        free_allowance=quantities,
    ),
    st.builds(
        Terms, model=st.just(PricingModel.GRADUATED), tiers=tier_lists(), free_allowance=quantities
    ),
    st.builds(
        Terms, model=st.just(PricingModel.VOLUME), tiers=tier_lists(), free_allowance=quantities
    ),
    st.builds(
        Terms,
        model=st.just(PricingModel.PACKAGE),
        package_size=st.decimals(min_value=1, max_value=10**4, places=0),
        package_price=prices,
        free_allowance=quantities,
    ),
)


@given(terms=terms_strategy, quantity=quantities, before=quantities, included=quantities)
def test_allowances_and_inclusions_never_make_a_cost_negative(terms, quantity, before, included):
    cost = engine.price_event(
        terms=terms,
        dimension="units",
        quantity=quantity,
        period_to_date=before,
        included=included,
    )
    assert cost.amount >= 0
    assert cost.included_quantity + cost.free_quantity + cost.billable_quantity == quantity
    assert min(cost.included_quantity, cost.free_quantity, cost.billable_quantity) >= 0


@settings(max_examples=60)
@given(
    terms=terms_strategy.filter(lambda t: t.model != PricingModel.VOLUME),
    events=st.lists(quantities, min_size=1, max_size=12),
)
def test_event_costs_add_up_to_the_period_total(terms, events):
    position, charged = D(0), D(0)
    for quantity in events:
        charged += engine.price_event(
            terms=terms, dimension="units", quantity=quantity, period_to_date=position
        ).amount
        position += quantity
    assert charged == engine.period_total(terms, position)


@settings(max_examples=60)
@given(terms=terms_strategy, events=st.lists(quantities, min_size=1, max_size=12))
def test_volume_events_never_charge_less_than_the_period_total(terms, events):
    position, charged = D(0), D(0)
    for quantity in events:
        charged += engine.price_event(
            terms=terms, dimension="units", quantity=quantity, period_to_date=position
        ).amount
        position += quantity
    assert charged >= engine.period_total(terms, position)


def _no_float(value) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, tuple):
        return all(_no_float(item) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return all(_no_float(getattr(value, name)) for name in value.__dataclass_fields__)
    return True


@given(terms=terms_strategy, quantity=quantities, before=quantities)
def test_no_float_anywhere_in_a_result(terms, quantity, before):
    breakdown = engine.price_dimensions(
        terms_by_dimension={"units": terms},
        quantities={"units": quantity},
        period_to_date={"units": before},
    )
    assert _no_float(breakdown)
    assert isinstance(breakdown.total, D)
    for line in breakdown.lines:
        for name in ("quantity", "amount", "unit_price", "billable_quantity"):
            assert isinstance(getattr(line, name), D)


# --- periods ------------------------------------------------------------------------------


def test_periods_follow_the_organizations_time_zone():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from apps.pricing.periods import period_bounds

    berlin = ZoneInfo("Europe/Berlin")
    # 23:30 UTC on 31 March is already 1 April in Berlin (summer time, UTC+2).
    instant = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    start, end = period_bounds(instant, "month", berlin)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-04-01T00:00:00+02:00",
        "2026-05-01T00:00:00+02:00",
    )
    day_start, day_end = period_bounds(instant, "day", berlin)
    assert (day_end - day_start).total_seconds() == 24 * 3600
    week_start, _ = period_bounds(instant, "week", berlin)
    assert week_start.weekday() == 0
    year_start, year_end = period_bounds(datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "year", berlin)
    assert year_start.year == 2027 and year_end.year == 2028
