"""Months anchored on a subscription's billing cycle, as Stripe counts them."""

import calendar
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from apps.pricing.periods import anchored_month_bounds

instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                        timezones=st.just(UTC))  # fmt: skip


def test_an_anchor_on_the_31st_lands_on_each_months_last_day_when_shorter():
    anchor = datetime(2026, 1, 31, 14, 37, tzinfo=UTC)

    assert anchored_month_bounds(datetime(2026, 2, 10, tzinfo=UTC), anchor) == (
        anchor, datetime(2026, 2, 28, 14, 37, tzinfo=UTC))  # fmt: skip
    feb_28 = datetime(2026, 2, 28, 14, 37, tzinfo=UTC)
    assert anchored_month_bounds(feb_28, anchor) == (
        feb_28, datetime(2026, 3, 31, 14, 37, tzinfo=UTC))  # fmt: skip
    assert anchored_month_bounds(datetime(2028, 2, 29, 15, tzinfo=UTC), anchor)[0] == datetime(
        2028, 2, 29, 14, 37, tzinfo=UTC)  # a leap year  # fmt: skip


@given(instant=instants, anchor=instants)
def test_every_instant_is_in_exactly_one_anchored_month(instant, anchor):
    start, end = anchored_month_bounds(instant, anchor)

    assert start <= instant < end
    assert anchored_month_bounds(end, anchor)[0] == end  # the next one starts where it ends
    for boundary in (start, end):
        last = calendar.monthrange(boundary.year, boundary.month)[1]
        assert boundary.day == min(anchor.day, last)
        assert boundary.time() == anchor.time()
