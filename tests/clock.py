"""The clock in tests: a test that depends on the calendar travels to a stated instant.

``travel("2026-12-02 10:00", "Europe/Berlin")`` moves this process's clock there (threads
included, so a live server's too) and lets it run on from there; the database's own
clock is never read by the portal, so PostgreSQL needs no travel."""

from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine

# A day in the middle of a month: the demo's four weeks of usage span two months.
MID_MONTH = "2026-11-20 12:00"


def instant(text: str, zone: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def travel(text: str, zone: str = "UTC", *, tick: bool = True) -> time_machine.travel:
    return time_machine.travel(instant(text, zone), tick=tick)
