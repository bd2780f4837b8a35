from decimal import Decimal as D

import pytest

from apps.budgets.models import Budget
from apps.customers.services import issue_api_key
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db


def create(api_client, key, **body):
    body = {"name": "Monthly cap", "limit": "25.00", "period": "monthly", **body}
    return api_client.post("/api/v1/budgets", body, format="json", **bearer(key))


def record(api_client, key, amount, product="calls"):
    return api_client.post(
        "/api/v1/usage/record", {"product_id": product, "usage_amount": amount},
        format="json", **bearer(key),
    )  # fmt: skip


def test_budgets_are_created_read_updated_and_deleted(api_client, key, calls, org):
    created = create(api_client, key, scope="product", product_id="calls", is_hard=True)
    assert created.status_code == 201, created.content
    budget_id = created.json()["id"]
    assert created.json()["currency"] == "USD"

    record(api_client, key, 500)  # $5
    read = api_client.get(f"/api/v1/budgets/{budget_id}", **bearer(key)).json()
    assert read["current_period"]["spent"] == "5.00"
    assert read["current_period"]["remaining"] == "20.00"
    assert read["current_period"]["utilization_percent"] == "20.00"

    paused = api_client.patch(
        f"/api/v1/budgets/{budget_id}", {"is_active": False}, format="json", **bearer(key)
    )
    assert paused.status_code == 200 and paused.json()["is_active"] is False
    listed = api_client.get("/api/v1/budgets", **bearer(key)).json()
    assert [b["id"] for b in listed] == [budget_id]
    assert api_client.delete(f"/api/v1/budgets/{budget_id}", **bearer(key)).status_code == 204
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": "-1"}, "limit"),
        ({"limit": "0", "is_hard": True}, "limit"),
        ({"limit": "NaN"}, "limit"),
        ({"currency": "EUR"}, "currency"),
        ({"thresholds": [100, 80]}, "thresholds"),
        ({"thresholds": [0]}, "thresholds"),
        ({"scope": "product", "product_id": "no-such"}, "product_id"),
        ({"scope": "product"}, "__all__"),
    ],
)
def test_invalid_budgets_are_400_with_field_errors(api_client, key, calls, body, field):
    response = create(api_client, key, **body)

    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    fields = response.json()["error"]["details"]["fields"]
    assert field in fields or "non_field_errors" in fields


def test_a_budget_cannot_scope_another_organizations_key(api_client, key, calls):
    stranger = issue_api_key(name="x", organization=OrganizationFactory()).api_key

    response = create(api_client, key, scope="api_key", api_key=stranger.prefix)

    assert response.status_code == 400


def test_another_organizations_budget_is_not_found(api_client, key, calls):
    other = OrganizationFactory()
    foreign = Budget.objects.create(organization=other, name="x", limit=D(1), currency="USD")

    response = api_client.get(f"/api/v1/budgets/{foreign.pk}", **bearer(key))

    assert response.status_code == 404


def test_a_key_without_budgets_write_cannot_change_budgets(api_client, org, calls):
    reader = issue_api_key(name="r", organization=org, scopes=["billing:read"]).raw_key

    assert create(api_client, reader).status_code == 403
    assert api_client.get("/api/v1/budgets", **bearer(reader)).status_code == 200


def test_budget_check_says_whether_usage_would_fit_without_reserving(api_client, key, calls):
    create(api_client, key, limit="1.00")
    record(api_client, key, 80)

    fits = api_client.post("/api/v1/budgets/check", {"product_id": "calls", "usage_amount": 20},
                           format="json", **bearer(key)).json()  # fmt: skip
    too_much = api_client.post("/api/v1/budgets/check",
                               {"product_id": "calls", "usage_amount": 21},
                               format="json", **bearer(key)).json()  # fmt: skip

    assert fits["allowed"] is True and fits["estimated_cost"] == "0.20"
    assert too_much["allowed"] is False
    assert too_much["budgets"][0]["spent"] == "0.80"


def test_violations_and_warnings(api_client, key, calls):
    create(api_client, key, name="over", limit="1.00", is_hard=False)
    create(api_client, key, name="near", limit="1.20", thresholds=[80, 100])
    create(api_client, key, name="fine", limit="100")
    record(api_client, key, 100)  # $1.00

    body = api_client.get("/api/v1/budgets/violations", **bearer(key)).json()

    assert [v["name"] for v in body["violations"]] == ["over"]
    assert [w["name"] for w in body["warnings"]] == ["near"]
    assert body["warnings"][0]["crossed_thresholds"] == [80]


def test_budget_check_with_a_negative_token_count_is_a_400(api_client, key, llm):
    response = api_client.post(
        "/api/v1/budgets/check",
        {"product_id": "llm", "usage_details": {"input_tokens": -700}},
        format="json", **bearer(key),
    )  # fmt: skip

    assert response.status_code == 400
    assert error_code(response) == "validation_error"


def test_quota_check_reports_the_inclusion_left(api_client, key, llm):
    api_client.post("/api/v1/usage/record",
                    {"product_id": "llm", "usage_details": {"input_tokens": 700}},
                    format="json", **bearer(key))  # fmt: skip

    body = api_client.post(
        "/api/v1/quota/check",
        {"user_id": "user123", "product_id": "llm", "requested_amount": 400},
        format="json", **bearer(key),
    ).json()  # fmt: skip

    assert body["has_quota"] is True
    assert (body["quota_limit"], body["used"], body["remaining"]) == ("1000", "700", "300")
    assert body["allowed"] is False


def test_quota_check_without_an_inclusion_allows(api_client, key, calls):
    body = api_client.post(
        "/api/v1/quota/check",
        {"service_type": "model_inference", "requested_amount": 1000},
        format="json", **bearer(key),
    ).json()  # fmt: skip

    assert body == {**body, "allowed": True, "has_quota": False}


def test_listing_budgets_reads_their_periods_in_one_query(api_client, key, calls):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for n in range(2):
        create(api_client, key, limit="1.00", name=f"b{n}")
    with CaptureQueriesContext(connection) as two:
        api_client.get("/api/v1/budgets", **bearer(key))
    for n in range(2, 6):
        create(api_client, key, limit="1.00", name=f"b{n}")

    with CaptureQueriesContext(connection) as six:
        response = api_client.get("/api/v1/budgets", **bearer(key))

    assert len(response.json()) == 6
    assert len(six.captured_queries) == len(two.captured_queries)


def test_a_suspended_organization_reads_its_budgets_but_changes_none(api_client, key, calls, org):
    budget_id = create(api_client, key).json()["id"]
    from apps.customers.services import set_organization_status

    set_organization_status(organization=org, status=org.Status.SUSPENDED)
    refused = [
        create(api_client, key, name="another"),
        api_client.put(f"/api/v1/budgets/{budget_id}", {"name": "x", "limit": "1", "period":
                       "monthly"}, format="json", **bearer(key)),
        api_client.patch(f"/api/v1/budgets/{budget_id}", {"limit": "1"}, format="json",
                         **bearer(key)),
        api_client.delete(f"/api/v1/budgets/{budget_id}", **bearer(key)),
    ]  # fmt: skip
    usage = record(api_client, key, 1)
    for response in refused:
        assert response.status_code == 403 == usage.status_code
        assert error_code(response) == "organization_suspended" == error_code(usage)
    assert Budget.objects.filter(organization=org).count() == 1
    assert Budget.objects.get().limit == D(25)
    assert api_client.get("/api/v1/budgets", **bearer(key)).status_code == 200
    assert api_client.get(f"/api/v1/budgets/{budget_id}", **bearer(key)).status_code == 200
