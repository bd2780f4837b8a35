"""The audit history: who changed a price, plan, budget, credit grant or organisation,
when, and what changed, visible in the admin's history of the object."""

from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from apps.budgets.models import Budget
from apps.core import staff
from apps.customers import wallets
from apps.customers.models import CreditGrant, Organization
from apps.pricing.models import Plan
from tests.admin.test_staff_groups import member_of
from tests.customers.factories import UserFactory
from tests.pages.conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def finance(db):
    staff.apply(Group, Permission)
    return member_of(staff.FINANCE)


def test_a_plan_change_in_the_admin_is_recorded_with_its_author_and_fields(finance, plan):
    url = reverse("admin:pricing_plan_change", args=[plan.pk])
    form = finance.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        name="Usage plan v2",
        base_fee="59",
        **{"included_quotas-TOTAL_FORMS": "0", "included_quotas-INITIAL_FORMS": "0"},
    )
    response = finance.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    record = Plan.history.filter(id=plan.pk).latest("history_date")
    assert record.history_user.username == "finance-staff"
    delta = record.diff_against(record.prev_record)
    assert {c.field for c in delta.changes} >= {"name", "base_fee"}
    page = finance.get(reverse("admin:pricing_plan_history", args=[plan.pk])).content.decode()
    assert "finance-staff" in page and "Usage plan v2" in page


def test_a_budget_changed_on_the_customer_pages_shows_who_changed_it(finance, org):
    budget = Budget.objects.create(organization=org, name="cap", limit=D(10), currency="USD")
    owner = UserFactory(username="customer-owner")
    from apps.customers import services

    services.add_member(organization=org, user=owner, role="owner")
    signed_in(owner).post(
        reverse("billing:budget-edit", kwargs={"budget_id": budget.pk}),
        {"name": "cap", "scope": "all", "period": "monthly", "limit": "25",
         "thresholds": "80, 100", "is_active": "on"},
    )  # fmt: skip
    record = Budget.history.filter(id=budget.pk).latest("history_date")
    assert record.history_user == owner and record.limit == D(25)
    page = finance.get(reverse("admin:budgets_budget_history", args=[budget.pk])).content.decode()
    assert "customer-owner" in page and "Limit:" in page


def test_credits_and_organization_actions_carry_their_reason(finance, org):
    wallets.grant_credits(organization=org, amount=D(5), reason="goodwill", granted_by="t")
    grant = CreditGrant.objects.get(organization=org)
    assert CreditGrant.history.filter(id=grant.pk).count() == 1  # its creation

    finance.post(
        reverse("admin:customers_organization_changelist"),
        {"action": "suspend", "_selected_action": [org.pk], "apply": "1",
         "reason": "chargeback"},
    )  # fmt: skip
    record = Organization.history.filter(id=org.pk).latest("history_date")
    assert record.status == "suspended"
    assert record.history_change_reason == "Suspend organisations: chargeback"
    page = finance.get(reverse("admin:customers_organization_history", args=[org.pk]))
    assert "chargeback" in page.content.decode()
