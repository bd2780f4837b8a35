from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from apps.budgets.models import Budget, BudgetPeriod
from apps.customers.services import issue_api_key
from apps.usage.models import UsageEvent
from tests.clock import travel
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code

RECORD = "/api/v1/usage/record"


def budget(org, limit, **fields):
    fields.setdefault("name", "cap")
    return Budget.objects.create(organization=org, limit=D(limit), currency="USD", **fields)


def record(api_client, key, amount, **body):
    return api_client.post(
        RECORD, {"product_id": "calls", "usage_amount": amount, **body}, format="json",
        **bearer(key),
    )  # fmt: skip


@pytest.mark.django_db
def test_a_hard_budget_refuses_the_event_that_would_cross_the_limit(api_client, org, key, calls):
    cap = budget(org, "1.00")

    fits = record(api_client, key, 60)  # $0.60
    crosses = record(api_client, key, 50)  # $0.50 more would make $1.10

    assert fits.status_code == 201
    assert fits.json()["budgets"] == [
        {"budget_id": cap.pk, "name": "cap", "hard": True, "limit": "1.00", "spent": "0.60",
         "remaining": "0.40"}
    ]  # fmt: skip
    assert crosses.status_code == 402
    assert error_code(crosses) == "budget_exceeded"
    details = crosses.json()["error"]["details"]
    assert details["budget_id"] == cap.pk and details["budget_name"] == "cap"
    assert (details["limit"], details["current_usage"], details["requested"]) == (
        "1.00", "0.60", "0.50",
    )  # fmt: skip
    assert (details["limit_minor"], details["current_usage_minor"]) == (100, 60)
    assert details["period_end"] is not None
    assert UsageEvent.objects.count() == 1
    assert BudgetPeriod.objects.get().spent == D("0.60")


@pytest.mark.django_db
def test_exactly_reaching_the_limit_is_allowed(api_client, org, key, calls):
    budget(org, "1.00")

    assert record(api_client, key, 100).status_code == 201
    assert record(api_client, key, 1).status_code == 402


@pytest.mark.django_db
def test_a_soft_budget_accepts_and_keeps_count(api_client, org, key, calls):
    budget(org, "0.10", is_hard=False)

    assert record(api_client, key, 50).status_code == 201
    assert BudgetPeriod.objects.get().spent == D("0.50")


@pytest.mark.django_db
def test_a_budget_covers_only_its_scope(api_client, org, key, calls, llm):
    budget(org, "0.01", scope=Budget.Scope.PRODUCT, product=llm)

    assert record(api_client, key, 500).status_code == 201  # calls: not covered
    other_key = issue_api_key(name="other", organization=org).raw_key
    budget(org, "0.05", name="key cap", scope=Budget.Scope.API_KEY,
           api_key=issue_api_key(name="capped", organization=org).api_key)  # fmt: skip
    assert record(api_client, other_key, 500).status_code == 201


@pytest.mark.django_db
def test_an_api_key_budget_caps_that_key(api_client, org, calls):
    issued = issue_api_key(name="capped", organization=org)
    budget(org, "0.05", scope=Budget.Scope.API_KEY, api_key=issued.api_key)

    assert record(api_client, issued.raw_key, 5).status_code == 201
    assert record(api_client, issued.raw_key, 5).status_code == 402


@pytest.mark.django_db
def test_a_batch_accepts_events_in_order_while_they_fit(api_client, org, key, calls):
    budget(org, "1.00")
    events = [{"product_id": "calls", "usage_amount": 30} for _ in range(5)]

    body = api_client.post(
        "/api/v1/usage/batch", {"events": events}, format="json", **bearer(key)
    ).json()

    assert [r["status"] for r in body["results"]] == ["accepted"] * 3 + ["rejected"] * 2
    assert body["results"][3]["error"]["code"] == "budget_exceeded"
    assert BudgetPeriod.objects.get().spent == D("0.90")


@pytest.mark.django_db
def test_each_month_is_its_own_period(api_client, org, key, calls):
    with travel("2026-12-02 10:00", "Europe/Berlin"):  # last month is inside the event window
        budget(org, "1.00")
        last_month = datetime(2026, 11, 30, 23, 59, tzinfo=org.tz)  # its last minute

        old = record(api_client, key, 90, occurred_at=last_month.isoformat())
        new = record(api_client, key, 90)

    assert old.status_code == new.status_code == 201
    assert sorted(BudgetPeriod.objects.values_list("spent", flat=True)) == [D("0.90")] * 2


@pytest.mark.django_db
def test_a_refused_event_does_not_count_against_other_budgets(api_client, org, key, calls):
    budget(org, "0.50", name="tight")
    loose = budget(org, "100", name="loose", is_hard=False)

    assert record(api_client, key, 60).status_code == 402
    assert not BudgetPeriod.objects.filter(budget=loose, spent__gt=0).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"limit": D(-1)}, "limit"),
        ({"limit": D(0)}, "limit"),
        ({"limit": D("NaN")}, "limit"),
        ({"currency": "EUR"}, "currency"),
        ({"thresholds": [100, 80]}, "thresholds"),
        ({"thresholds": [0, 50]}, "thresholds"),
        ({"thresholds": [80, 120]}, "thresholds"),
    ],
)
def test_invalid_budgets_are_refused_with_field_errors(org, fields, field):
    values = {"organization": org, "name": "b", "limit": D(10), "currency": "USD", **fields}

    with pytest.raises(ValidationError) as error:
        Budget(**values).full_clean()

    assert field in error.value.message_dict


@pytest.mark.django_db
def test_a_budget_cannot_name_another_organizations_key(org):
    stranger = issue_api_key(name="x", organization=OrganizationFactory()).api_key

    with pytest.raises(ValidationError) as error:
        Budget(organization=org, name="b", limit=D(1), currency="USD",
               scope=Budget.Scope.API_KEY, api_key=stranger).full_clean()  # fmt: skip

    assert "api_key" in error.value.message_dict


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_posts_never_spend_past_a_hard_budget(org, key, calls):
    budget(org, "1.00")  # room for exactly 10 events of $0.10

    def post(n):
        try:
            return Client().post(
                RECORD, {"product_id": "calls", "usage_amount": 10},
                content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
                HTTP_IDEMPOTENCY_KEY=f"race-{n}",
            ).status_code  # fmt: skip
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(post, range(50), timeout=300))

    assert statuses.count(201) == 10
    assert statuses.count(402) == 40
    assert BudgetPeriod.objects.get().spent == D("1.00")
    assert UsageEvent.objects.count() == 10


@pytest.mark.django_db
def test_staff_see_budgets_with_their_periods(client, org, key, calls, api_client):
    from django.contrib.auth import get_user_model

    cap = budget(org, "1.00")
    record(api_client, key, 10)
    client.force_login(get_user_model().objects.create_superuser("s", "s@example.com", "pw-s-1234"))

    page = client.get(f"/admin/budgets/budget/{cap.pk}/change/").content.decode()

    assert "0.10" in page
    assert client.get("/admin/budgets/budgetperiod/").status_code == 200
