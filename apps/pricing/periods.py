"""Calendar periods in an organisation's time zone: pure functions, no database."""

from __future__ import annotations

from datetime import date, datetime, timedelta
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


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def period_bounds(instant: datetime, period: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the ``period`` (day, week, month, year) holding ``instant``, with
    boundaries at local midnight in ``tz``."""
    local_day = instant.astimezone(tz).date()
    start = _start_of(local_day, period)
    return _midnight(start, tz), _midnight(_next(start, period), tz)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()
