"""Periods in an organisation's time zone: pure functions, no database.

Calendar periods start at local midnight. A month may instead be anchored, as Stripe
anchors a subscription's billing cycle: each period starts on the anchor's day of the
month at the anchor's time of day (UTC), on the month's last day when the month is shorter
(an anchor on the 31st gives Feb 28, then Mar 31)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAY, WEEK, MONTH, YEAR = "day", "week", "month", "year"


def _start_of(day: date, period: str) -> date:
    if period == DAY:
        return day
    if period == WEEK:
        return day - timedelta(days=day.weekday())  # weeks start on Monday
    if period == MONTH:
        return day.replace(day=1)
    if period == YEAR:
        return day.replace(month=1, day=1)
    raise ValueError(f"Unknown period {period!r}.")


def _next(start: date, period: str) -> date:
    if period == DAY:
        return start + timedelta(days=1)
    if period == WEEK:
        return start + timedelta(days=7)
    if period == MONTH:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start.replace(year=start.year + 1)


def midnight(day: date, tz: ZoneInfo) -> datetime:
    """The local midnight that starts ``day`` in ``tz``."""
    return datetime(day.year, day.month, day.day, tzinfo=tz)


# Pure and called for every event and budget (a batch's events mostly share an instant):
# remembered for the instants seen last.
@lru_cache(maxsize=8192)
def period_bounds(
    instant: datetime, period: str, tz: ZoneInfo, anchor: datetime | None = None
) -> tuple[datetime, datetime]:
    """[start, end) of the ``period`` (day, week, month, year) holding ``instant``, with
    boundaries at local midnight in ``tz``; a month anchored on ``anchor`` when one is
    given (a subscription's billing cycle)."""
    if anchor is not None and period == MONTH:
        return anchored_month_bounds(instant, anchor)
    local_day = instant.astimezone(tz).date()
    start = _start_of(local_day, period)
    return midnight(start, tz), midnight(_next(start, period), tz)


@lru_cache(maxsize=8192)
def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def _months_after(anchor: datetime, months: int) -> datetime:
    year, index = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, index + 1)[1])
    return anchor.replace(year=year, month=index + 1, day=day)


def anchored_month_bounds(instant: datetime, anchor: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the anchored month holding ``instant`` (before the anchor too)."""
    anchor, instant = anchor.astimezone(UTC), instant.astimezone(UTC)
    k = (instant.year - anchor.year) * 12 + instant.month - anchor.month
    while _months_after(anchor, k) > instant:
        k -= 1
    while _months_after(anchor, k + 1) <= instant:
        k += 1
    return _months_after(anchor, k), _months_after(anchor, k + 1)
