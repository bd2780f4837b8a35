"""The finance dashboard: each figure from the data behind it, each link to its list."""

import re
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from apps.budgets.models import Budget, BudgetPeriod
from apps.core import staff
from apps.customers import wallets
from apps.customers.models import Organization
from apps.usage.ingestion import EventInput, ingest
from apps.usage.models import BillingRecord
from billing_portal.dashboard import dashboard, month_bounds
from tests.admin.test_staff_groups import member_of
from tests.clock import travel
from tests.customers.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def books(org, plan, calls):
    staff.apply(Group, Permission)
    plan.base_fee = D(49)
    plan.save()
    Organization.objects.filter(pk=org.pk).update(subscription_status="active")
    OrganizationFactory(plan=plan, subscription_status="trialing")
    OrganizationFactory(plan=plan, subscription_status="past_due")
    events = [EventInput(idempotency_key=f"e{n}", product_id="calls", fingerprint=f"f{n}",
                         usage_amount=D(100)) for n in range(3)]  # fmt: skip
    ingest(organization=org, events=events)  # 3 x $1.00, invoiced
    BillingRecord.objects.filter(pk=BillingRecord.objects.first().pk).update(status="failed")
    wallets.top_up_wallet(organization=org, amount=D(20), actor="t", reason="t")
    wallets.grant_credits(organization=org, amount=D(5), reason="r", granted_by="t")
    wallets.grant_credits(organization=org, amount=D(7), reason="old", granted_by="t",
                          expires_at=timezone.now() + timedelta(seconds=1))  # fmt: skip
    budget = Budget.objects.create(organization=org, name="cap", limit=D("3.5"), currency="USD")
    BudgetPeriod.objects.create(budget=budget, starts_at=timezone.now() - timedelta(hours=1),
                                ends_at=timezone.now() + timedelta(days=1), spent=D(3))  # fmt: skip
    return org


def test_the_figures_add_up(books):
    figures = dashboard(now=timezone.now() + timedelta(seconds=2))  # the 7 credits expired
    assert figures["mrr"] == {"USD": D(98)}  # active and past due pay; trials do not
    assert (figures["paying"], figures["trialing"]) == (2, 1)
    assert figures["this_month"] == {"USD": D(3)}
    assert [(row["currency"], row["total"]) for row in figures["by_service"]] == [("USD", D(3))]
    assert figures["top"][0]["organization__name"] == books.name
    assert figures["failed"]["count"] == 1 and figures["failed"]["totals"] == {"USD": D(1)}
    assert figures["past_due"] == 1
    assert figures["liabilities"] == {"USD": D(20) + D(5)}
    assert [p.budget.name for p in figures["at_risk"]] == ["cap"]  # 3 of 3.5 is past 80 %


def test_month_bounds_compare_the_same_days():
    from datetime import date

    assert month_bounds(date(2026, 3, 31)) == (
        date(2026, 3, 1),
        date(2026, 2, 1),
        date(2026, 2, 28),
    )
    assert month_bounds(date(2026, 1, 15)) == (
        date(2026, 1, 1),
        date(2025, 12, 1),
        date(2025, 12, 15),
    )


def test_the_dashboard_is_the_admin_index_and_every_link_opens_its_list(books):
    client = member_of(staff.READ_ONLY)
    page = client.get("/admin/").content.decode()
    assert 'id="finance-dashboard"' in page and "<svg" in page
    links = set(re.findall(r'href="(/admin/[^"]+)"', page.split('id="finance-dashboard"')[1]
                           .split("app-list")[0]))  # fmt: skip
    assert len(links) >= 10
    for link in links:
        response = client.get(link.replace("&amp;", "&"))
        assert response.status_code == 200, link
        assert "?e=1" not in response.get("Location", ""), link  # a filter the list refuses


def test_the_organization_page_is_a_360_view_and_its_links_open(books):
    client = member_of(staff.READ_ONLY)
    page = client.get(f"/admin/customers/organization/{books.pk}/change/").content.decode()
    for panel in ("Budgets", "Wallet and credits", "Recent billing records", "Recent alerts"):
        assert panel in page
    assert "cap" in page and "bill_" in page and "All billing records" in page
    links = set(re.findall(r'href="(/admin/(?:usage|customers|budgets)/[^"]+)"', page))
    assert len(links) >= 5
    for link in links:
        response = client.get(link.replace("&amp;", "&"))
        assert response.status_code == 200, link


@pytest.mark.parametrize(
    ("at", "this_month"),
    [("2026-12-07 23:30", {"USD": D(1)}), ("2026-12-01 00:30", {"USD": D(1)}),
     ("2026-11-30 23:30", {})],
)  # fmt: skip
def test_this_month_holds_the_organisations_own_days(org, plan, calls, at, this_month):
    """The organisation (Berlin) is an hour ahead of UTC: late on a UTC evening its usage
    falls on its next day, still this month's; on the month's last evening that day is
    already the next month's, which the month-to-date figure does not take early."""
    with travel(at):
        event = EventInput(idempotency_key="late", product_id="calls", fingerprint="f",
                           usage_amount=D(100))  # fmt: skip
        ingest(organization=org, events=[event])
        figures = dashboard()
    assert figures["this_month"] == this_month
    assert [row["total"] for row in figures["by_service"]] == list(this_month.values())
