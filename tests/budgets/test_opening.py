"""A budget created part-way through its period counts the period's usage from its start
(a monthly budget is about the month), says so, and enforces against all of it; created
while events are being posted, it misses none and counts none twice (PostgreSQL)."""

import threading
import time
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.models import Sum

from apps.budgets import services
from apps.budgets.models import Budget, BudgetPeriod
from apps.usage.ingestion import EventInput, ingest
from apps.usage.models import BillingRecord
from tests.clock import MID_MONTH, travel
from tests.http import bearer, error_code
from tests.pricing.factories import ProductFactory, price

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mid_month():
    with travel(MID_MONTH):
        yield


def record(api_client, key, units, product="calls"):
    return api_client.post("/api/v1/usage/record", {"product_id": product, "usage_amount": units},
                           format="json", **bearer(key))  # fmt: skip


def create(api_client, key, **body):
    body = {"name": "Month cap", "limit": "6.00", "period": "monthly", "is_hard": True, **body}
    return api_client.post("/api/v1/budgets", body, format="json", **bearer(key))


def test_a_budget_created_mid_month_counts_the_months_usage_and_enforces_against_it(
    api_client, key, calls
):
    for _ in range(2):
        assert record(api_client, key, 250).status_code == 201  # $2.50 each, before the budget
    created = create(api_client, key)
    assert created.status_code == 201, created.content
    period = created.json()["current_period"]
    assert (period["spent"], period["spent_before_budget"], period["remaining"]) == (
        "5.00", "5.00", "1.00",
    )  # fmt: skip
    refused = record(api_client, key, 150)  # $1.50: past the limit with the month's $5.00
    assert refused.status_code == 402, refused.content
    assert error_code(refused) == "budget_exceeded"
    assert record(api_client, key, 100).status_code == 201  # $1.00: exactly the limit
    budget_id = created.json()["id"]
    period = api_client.get(f"/api/v1/budgets/{budget_id}", **bearer(key)).json()["current_period"]
    assert (period["spent"], period["spent_before_budget"]) == ("6.00", "5.00")


def test_a_product_budget_counts_only_its_products_usage_and_a_new_scope_counts_again(
    api_client, key, calls
):
    other = ProductFactory(code="other")
    price(other, unit_price="1.00")
    assert record(api_client, key, 250).status_code == 201  # calls: $2.50
    assert record(api_client, key, 3, product="other").status_code == 201  # other: $3.00
    created = create(api_client, key, scope="product", product_id="calls", limit="100")
    assert created.json()["current_period"]["spent"] == "2.50"
    moved = api_client.patch(f"/api/v1/budgets/{created.json()['id']}", {"product_id": "other"},
                             format="json", **bearer(key))  # fmt: skip
    assert moved.status_code == 200, moved.content
    assert moved.json()["current_period"]["spent"] == "3.00"
    everything = create(api_client, key, name="All", limit="100")
    assert everything.json()["current_period"]["spent"] == "5.50"


def test_a_budget_made_active_again_counts_the_usage_of_its_pause(api_client, key, calls, org):
    created = create(api_client, key, limit="100")
    path = f"/api/v1/budgets/{created.json()['id']}"
    api_client.patch(path, {"is_active": False}, format="json", **bearer(key))
    assert record(api_client, key, 250).status_code == 201
    back = api_client.patch(path, {"is_active": True}, format="json", **bearer(key))
    assert back.json()["current_period"]["spent"] == "2.50"


def test_the_budget_page_says_what_it_counts(client, key, api_client, calls, org):
    from apps.customers.services import add_member
    from tests.customers.factories import UserFactory

    assert record(api_client, key, 250).status_code == 201
    budget = services.save_budget(Budget(organization=org, name="Cap", limit=D(10),
                                         period=Budget.Period.MONTHLY))  # fmt: skip
    owner = UserFactory(username="cap-owner")
    add_member(organization=org, user=owner, role="owner")
    client.force_login(owner)
    page = client.get(f"/billing/budgets/{budget.pk}/").content.decode()
    assert 'id="counted-from"' in page
    assert "Counts the usage of the whole period from Nov 1" in page
    assert "$2.50 of it recorded before this budget began counting" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_budget_created_while_events_are_posted_counts_each_exactly_once(plan, calls):
    from tests.customers.factories import OrganizationFactory

    organization = OrganizationFactory(plan=plan, time_zone="UTC")
    stop, failures, posted = threading.Event(), [], []

    def writer(n: int) -> None:
        try:
            batch = 0
            while not stop.is_set():
                events = [
                    EventInput(
                        idempotency_key=f"w{n}-{batch}-{i}",
                        fingerprint=f"w{n}-{batch}-{i}",
                        product_id="calls",
                        usage_amount=D(1),
                    )  # fmt: skip
                    for i in range(50)
                ]
                outcomes = ingest(organization=organization, events=events)
                assert all(o.status == o.ACCEPTED for o in outcomes), outcomes[0].error
                posted.append(len(events))
                batch += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    budgets = []
    try:
        for n in range(5):  # each created while batches are in flight
            while len(posted) < 2 * (n + 1) and not failures:
                time.sleep(0.01)  # (a timed wait would hang under faketime)
            budgets.append(services.save_budget(Budget(
                organization=organization, name=f"cap {n}", limit=D(1000000),
                period=Budget.Period.MONTHLY,
            )))  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures
    spent = BillingRecord.objects.filter(organization=organization).aggregate(
        total=Sum("total_amount")
    )["total"]
    assert spent > 0
    for budget in budgets:
        period = BudgetPeriod.objects.get(budget=budget)
        assert period.spent == spent, (budget.name, period.spent, spent)
    # The budgets were opened while usage was recorded, not only before or after it.
    assert len({BudgetPeriod.objects.get(budget=b).spent_before_budget for b in budgets}) > 1
