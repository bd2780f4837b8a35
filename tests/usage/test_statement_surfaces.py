"""Statements on the API, the customer pages (with a PDF) and the admin (read-only, re-run
of a stopped close, the month-end report as CSV and XLSX)."""

import io
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from apps.customers import services
from apps.pricing.periods import MONTH, period_bounds
from apps.usage import statements
from apps.usage.models import DailyUsage, Statement
from tests.customers.factories import OrganizationFactory, UserFactory
from tests.http import bearer
from tests.pages.conftest import signed_in
from tests.usage.test_statements import record

pytestmark = pytest.mark.django_db


def closed(organization) -> Statement:
    start, end = period_bounds(timezone.now(), MONTH, organization.tz)
    return statements.close_period(organization=organization, period_start=start, period_end=end,
                                   now=end + timedelta(hours=1))  # fmt: skip


@pytest.fixture
def two(plan, calls):
    a = OrganizationFactory(slug="stmt-a", plan=plan)
    b = OrganizationFactory(slug="stmt-b", plan=plan)
    for organization in (a, b):
        record(organization, "calls", units=D(123))
    return closed(a), closed(b)


def test_the_api_lists_and_shows_an_organizations_own_statements(api_client, two):
    mine, theirs = two
    key = services.issue_api_key(name="k", organization=mine.organization).raw_key
    listed = api_client.get("/api/v1/billing/statements", **bearer(key)).json()
    assert [s["id"] for s in listed["results"]] == [mine.pk]
    assert listed["results"][0]["total_due"] == "1.23"
    detail = api_client.get(f"/api/v1/billing/statements/{mine.pk}", **bearer(key)).json()
    assert detail["lines"][0]["amount"] == "1.23" and detail["lines"][0]["product_id"] == "calls"
    other = api_client.get(f"/api/v1/billing/statements/{theirs.pk}", **bearer(key))
    assert other.status_code == 404


def test_the_customer_pages_list_show_and_download_a_statement(two):
    mine, theirs = two
    viewer = UserFactory(username="stmt-viewer")
    services.add_member(organization=mine.organization, user=viewer, role="viewer")
    client = signed_in(viewer)
    assert "$1.23" in client.get(reverse("billing:statements")).content.decode()
    page = client.get(reverse("billing:statement", args=[mine.pk])).content.decode()
    assert "Calls" in page and "Total due" in page
    pdf = client.get(reverse("billing:statement-pdf", args=[mine.pk]))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    assert client.get(reverse("billing:statement", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("billing:statement-pdf", args=[theirs.pk])).status_code == 404


@pytest.fixture
def finance_client(client):
    client.force_login(get_user_model().objects.create_superuser("fin", "f@e.com", "pw-12345"))
    return client


def test_a_stopped_close_is_re_run_from_the_admin(finance_client, plan, calls):
    organization = OrganizationFactory(slug="stmt-c", plan=plan)
    this_month, _ = period_bounds(timezone.now(), MONTH, organization.tz)
    start, end = period_bounds(this_month - timedelta(days=1), MONTH, organization.tz)
    record(organization, "calls", units=D(10), at=start + timedelta(days=3))
    row = DailyUsage.objects.get(organization=organization)
    DailyUsage.objects.filter(pk=row.pk).update(cost=row.cost + 1)  # planted
    statement = statements.close_period(organization=organization, period_start=start,
                                        period_end=end)  # fmt: skip
    assert statement.status == Statement.Status.MISMATCH
    DailyUsage.objects.filter(pk=row.pk).update(cost=row.cost)  # put right
    finance_client.post("/admin/usage/statement/", {
        "action": "rerun", "_selected_action": [statement.pk], "apply": "1", "reason": "fixed",
    })  # fmt: skip
    statement.refresh_from_db()
    assert statement.status == Statement.Status.FINAL and statement.total_due == D("0.10")
    assert b"fixed" in finance_client.get(f"/admin/usage/statement/{statement.pk}/history/").content


def test_the_month_end_report_in_the_admin_and_as_csv_and_xlsx(finance_client, two):
    mine, _ = two
    month = f"{mine.period_start:%Y-%m}"
    page = finance_client.get(f"/admin/usage/statement/month-end/?month={month}").content.decode()
    assert "Revenue by plan" in page and "Usage revenue by service type" in page
    csv = finance_client.get(f"/admin/usage/statement/month-end/?month={month}&format=csv")
    text = csv.content.decode()
    assert text.startswith("section,item,currency,amount,count")
    assert "Revenue by plan (statements' total due)" in text and ",2" in text  # two statements
    xlsx = finance_client.get(f"/admin/usage/statement/month-end/?month={month}&format=xlsx")
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert [cell.value for cell in sheet[1]] == ["section", "item", "currency", "amount", "count"]
    assert sheet.max_row == len(text.strip().splitlines())
