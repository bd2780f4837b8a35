"""The books balance on the demo after four weeks of usage and a closed month, and a
difference planted on purpose is reported."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.customers.models import Organization, Wallet
from apps.pricing.periods import MONTH, period_bounds
from apps.usage import statements
from apps.usage.books import check_books
from apps.usage.models import BillingRecord, Statement, UsageEvent
from tests.clock import MID_MONTH, travel

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    # In the middle of a month, the demo's four weeks of usage reach into the month before.
    with travel(MID_MONTH):
        out = StringIO()
        call_command("seed_demo", stdout=out)
        assert "days of usage" in out.getvalue()  # the progress bar
        organization = Organization.objects.get(slug="demo")
        # Close the month before this one.
        this_start, _ = period_bounds(timezone.now(), MONTH, organization.tz)
        start, end = period_bounds(this_start - timedelta(days=1), MONTH, organization.tz)
        statement = statements.close_period(organization=organization, period_start=start,
                                            period_end=end)  # fmt: skip
        assert statement.status == "final", statement.mismatch
        yield organization


def test_the_books_balance_on_the_demo(demo):
    assert check_books() == []
    out = StringIO()
    call_command("check_books", stdout=out)
    assert "The books balance." in out.getvalue()


def test_a_planted_wallet_difference_is_reported(demo):
    Wallet.objects.filter(organization=demo).update(balance=12345)
    differences = check_books()
    assert {d.check for d in differences} == {"wallet ledger", "wallet balance after"}
    with pytest.raises(SystemExit):
        call_command("check_books", stdout=StringIO())


def test_a_record_changed_in_a_closed_period_is_reported(demo):
    closed = Statement.objects.get(organization=demo)
    record = BillingRecord.objects.filter(
        organization=demo, occurred_at__gte=closed.period_start, occurred_at__lt=closed.period_end,
        total_amount__gt=0,
    ).first()  # fmt: skip
    assert record is not None, "the demo has priced usage in the closed month"
    BillingRecord.objects.filter(pk=record.pk).update(total_amount=record.total_amount + 1)
    assert [d.check for d in check_books()] == ["statements cover records"]


def test_an_event_without_its_record_is_reported(demo):
    from django.db import connection

    record = BillingRecord.objects.filter(organization=demo).first()
    with connection.cursor() as cursor:  # planted below the application's own rules
        cursor.execute("DELETE FROM usage_billingevent WHERE record_id = %s", [record.pk])
        cursor.execute("DELETE FROM usage_billingrecord WHERE id = %s", [record.pk])
    checks = [d.check for d in check_books()]
    assert "usage event without billing record" in checks
    assert UsageEvent.objects.filter(pk=record.event_id).exists()
