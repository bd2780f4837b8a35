"""The API against its own OpenAPI schema (served at /api/schema/): every operation
answers without a server error, with a documented status and content type, and with a body
the schema describes.

Two kinds of requests reach it, both through the WSGI application, with both kinds of
key: those schemathesis generates from the schema (valid and invalid ones, boundary values,
a missing key), a bounded number per operation; and realistic ones built from the demo data,
for each operation: successes, so that every success body is checked with real content,
and its documented refusals (a hard budget's 402, an idempotency conflict's 409, a batch's
413, a throttle's 429...), each sent once for real."""

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Generated requests per operation in the fuzzing phase; schemathesis's examples and
# coverage phases (boundary values, each constraint broken once, no key) come on top.
MAX_EXAMPLES = 8

app = get_wsgi_application()
# The schema covers /api/v1/ only: the Stripe webhook (a signed payload from Stripe, which
# no generated request could carry) and the pages are not in it.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)


@pytest.fixture(scope="module")
def demo_portal(django_db_setup, django_db_blocker):
    """The demo's catalog, meters, organisation with budgets, four weeks of usage (a few
    events a day) and last month's final statement, with a key of each kind: made once for
    the module in a transaction rolled back after its last test (each test's own is a
    savepoint inside it, so what one test changes the next never sees)."""
    from apps.budgets import demo as budgets_demo
    from apps.customers import demo as customers_demo
    from apps.customers.services import issue_api_key
    from apps.pricing import demo as pricing_demo
    from apps.pricing.models import Product, Unit
    from apps.usage import demo as usage_demo

    with django_db_blocker.unblock(), transaction.atomic():
        plans = pricing_demo.seed_catalog()
        usage_demo.seed_meters()
        organization = customers_demo.seed_customers(plan=plans["pro"]).organization
        budgets_demo.seed_budgets(organization)
        usage_demo.seed_usage(organization, per_day=2)
        customers_demo.top_up_after_usage(organization)
        statement = usage_demo.close_last_month(organization)
        # A product the catalog lists before any price is set for it.
        Product.objects.create(code="unpriced", name="Unpriced", unit=Unit.CALL,
                               service_type_id="api_gateway", dimensions=["units"])  # fmt: skip
        yield {
            "organization": organization,
            "statement_id": statement.pk,
            "keys": {
                "organisation": issue_api_key(name="contract", organization=organization).raw_key,
                "service": issue_api_key(name="contract", service=True).raw_key,
                "unknown": "not-a-key",
            },
        }
        transaction.set_rollback(True)


@pytest.fixture(autouse=True)
def _connection_kept_across_requests():
    """The test's connection holds its transaction: as Django's test client does, the WSGI
    application must not close it when a request ends."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(params=["organisation", "service"])
def contract_key(request, demo_portal):
    return demo_portal["keys"][request.param]


def bearer(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # The fixtures are the same portal for every example (each test rolls back once).
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
    ],
)
def test_every_operation_keeps_its_contract_on_generated_requests(case, contract_key):
    case.call_and_validate(headers=bearer(contract_key), checks=CHECKS)


def realistic_requests(portal: dict) -> dict[str, list[dict]]:
    """Per operation, requests to the demo portal: each is the keyword arguments of
    schemathesis's ``Case`` (path parameters, query, body, media type), with ``key``, the
    kind of key that sends it (the organisation's unless it says), ``status``, what it must
    be answered with (a success unless it says: each documented refusal is sent once, for
    real), and ``settings`` to change for it."""
    from apps.budgets.models import Budget
    from apps.usage.models import BillingRecord, BillingStatus

    organization = portal["organization"]
    budget = Budget.objects.filter(organization=organization).order_by("pk").first()
    record = (
        BillingRecord.objects.filter(organization=organization, status=BillingStatus.COMPLETED)
        .order_by("pk")
        .first()
    )
    tokens = {"input_tokens": "1200", "output_tokens": "300"}
    # Past the plan's million included tokens and the hard budget's 150 at $2.50/M.
    costly = {"product_id": "gpt-4o", "dimensions": {"input_tokens": "100000000"},
              "billing_method": "payment_charge"}  # fmt: skip
    budget_body = {"name": "Contract", "scope": "all", "period": "monthly", "limit": "500.00",
                   "is_hard": False, "thresholds": [50, 80]}  # fmt: skip
    cloud_event = {"specversion": "1.0", "id": "contract-ce-1", "source": "contract",
                   "type": "agent_invocation", "subject": organization.slug,
                   "data": {"agent_id": "research-agent", "model": "claude-sonnet-4",
                            "tokens_input": 900, "tokens_output": 120}}  # fmt: skip
    event = {"event_id": "contract-1", "product_id": "agent-run", "usage_amount": "2",
             "user_id": "alice"}  # fmt: skip
    too_many = [{"product_id": "agent-run", "usage_amount": "1"}] * 1001
    platform = {"key": "service"}
    acting_for = {"organization_id": organization.slug}
    return {
        "GET /api/v1/info": [
            {},
            platform,
            {"key": "unknown", "status": 401},
            {"headers": {"Accept": "text/html"}, "status": 406},
        ],
        "GET /api/v1/organization": [
            {},
            {**platform, "query": acting_for},
            {**platform, "status": 400},
            {"query": {"organization_id": "another"}, "status": 404},
        ],
        "GET /api/v1/pricing/products": [{}],
        "GET /api/v1/pricing/products/{code}": [
            {"path_parameters": {"code": "gpt-4o-mini"}},
            {"path_parameters": {"code": "no-such-product"}, "status": 404},
        ],
        "POST /api/v1/billing/calculate": [
            {"body": {"product_id": "gpt-4o-mini", "dimensions": tokens, "user_id": "alice"}},
            {"body": {"product_id": "agent-run", "usage_amount": "3", "currency": "USD"}},
            {"body": {"product_id": "unpriced", "usage_amount": "1"}, "status": 422},
        ],
        "POST /api/v1/pricing/estimate": [{"body": {"product_id": "gpt-4o", **tokens}}],
        "POST /api/v1/quota/check": [
            {"body": {"product_id": "gpt-4o-mini", "requested_amount": "5000"}},
            {"body": {"service_type": "agent_execution", "requested_amount": "1"}},
        ],
        "POST /api/v1/budgets/check": [{"body": {"product_id": "agent-run", "usage_amount": "1"}}],
        "GET /api/v1/budgets": [{}, {**platform, "query": acting_for}],
        "POST /api/v1/budgets": [
            {"body": budget_body},
            {**platform, "body": budget_body, "status": 403},  # no budgets:write scope
            {"body": {**budget_body, "limit": "-1"}, "status": 400},
        ],
        "GET /api/v1/budgets/{id}": [{"path_parameters": {"id": budget.pk}}],
        "PUT /api/v1/budgets/{id}": [{"path_parameters": {"id": budget.pk}, "body": budget_body}],
        "PATCH /api/v1/budgets/{id}": [
            {"path_parameters": {"id": budget.pk}, "body": {"limit": "175.50"}}
        ],
        "DELETE /api/v1/budgets/{id}": [
            {"path_parameters": {"id": budget.pk}},
            {"path_parameters": {"id": budget.pk}, "status": 404},
        ],
        "GET /api/v1/budgets/violations": [{}, {**platform, "query": acting_for}],
        "POST /api/v1/usage/record": [
            {"body": event},
            {"body": event},  # the same event again: a duplicate, answered 200
            {"body": {**event, "usage_amount": "3"}, "status": 409},
            {"body": {"product_id": "gpt-4o-mini", "dimensions": tokens, "user_id": "bob"}},
            {"body": costly, "status": 402},
            {"body": "product_id=agent-run", "media_type": "text/plain", "status": 415},
            {"body": event, "settings": {"API_THROTTLE_RATE": "0/min"}, "status": 429},
        ],
        "POST /api/v1/usage/batch": [
            {
                "body": {
                    "events": [
                        {**event, "event_id": "contract-2"},
                        {"product_id": "no-such-product", "usage_amount": "1"},
                    ]
                }
            },
            {
                **platform,
                "body": {
                    "organization_id": organization.slug,
                    "events": [{**event, "event_id": "contract-3"}],
                },
            },
            {"body": {"events": too_many}, "status": 413},
        ],
        "POST /api/v1/events": [
            {"body": cloud_event, "media_type": "application/cloudevents+json"},
            {
                "body": [{**cloud_event, "id": "contract-ce-2"}, {**cloud_event, "type": "nope"}],
                "media_type": "application/cloudevents-batch+json",
            },
            {
                "body": {**cloud_event, "data": {**cloud_event["data"], "tokens_input": 901}},
                "media_type": "application/cloudevents+json",
                "status": 409,
            },
            {
                "body": {**cloud_event, "id": "contract-ce-3", "subject": "another"},
                "media_type": "application/cloudevents+json",
                "status": 400,
            },
        ],
        "GET /api/v1/meters": [{}],
        "GET /api/v1/meters/{slug}/query": [
            {"path_parameters": {"slug": "agent_invocation"}},
            {
                "path_parameters": {"slug": "agent_invocation"},
                "query": {
                    "windowSize": "DAY",
                    "groupBy": ["model"],
                    "dimension": "input_tokens",
                    "windowTimeZone": "Europe/Berlin",
                },
            },
            {"path_parameters": {"slug": "no-such-meter"}, "status": 404},
        ],
        "GET /api/v1/billing/records": [{"query": {"limit": 5}}, platform],
        "GET /api/v1/billing/records/user/{user_id}": [
            {"path_parameters": {"user_id": "alice"}},
            {**platform, "path_parameters": {"user_id": "alice"}},
        ],
        "POST /api/v1/billing/process": [
            {"body": {"billing_id": record.billing_id, "billing_method": record.billing_method}},
            {
                "body": {"billing_id": record.billing_id, "billing_method": "wallet_deduction"},
                "status": 409,
            },
            {
                "body": {"billing_id": "bill_none", "billing_method": "wallet_deduction"},
                "status": 404,
            },
        ],
        "POST /api/v1/billing/refund": [
            {"body": {"billing_id": record.billing_id, "reason": "A contract test."}}
        ],
        "GET /api/v1/billing/statements": [
            {},
            {"query": {"limit": 1}},
            {**platform, "query": acting_for},
        ],
        "GET /api/v1/billing/statements/{statement_id}": [
            {"path_parameters": {"statement_id": portal["statement_id"]}},
            {"path_parameters": {"statement_id": portal["statement_id"] + 1}, "status": 404},
        ],
        "GET /api/v1/stats": [{}, platform],
        "GET /api/v1/usage/aggregations": [
            {"query": {"group_by": "product,day,billing_method"}},
            {**platform, "query": {"group_by": "user"}},
        ],
        "GET /api/v1/usage/trends": [{"query": {"days": 7}}, platform],
        "GET /api/v1/usage/top-consumers": [{}, platform],
        "GET /api/v1/wallet": [{}, {**platform, "query": acting_for}],
    }


OPERATIONS = sorted(
    f"{operation.method.upper()} {operation.path}"
    for operation in (result.ok() for result in schema.get_all_operations())
)


def test_every_operation_has_realistic_requests(demo_portal):
    assert sorted(realistic_requests(demo_portal)) == OPERATIONS


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_keeps_its_contract_on_realistic_requests(label, demo_portal, settings):
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    for request in realistic_requests(demo_portal).get(label, []):
        request = dict(request)
        key = demo_portal["keys"][request.pop("key", "organisation")]
        status = request.pop("status", None)
        for name, value in request.pop("settings", {}).items():
            setattr(settings, name, value)
        case = operation.Case(**request)

        response = case.call_and_validate(headers=bearer(key), checks=CHECKS)

        if status is None:
            assert response.status_code < 300, (request, response.text)
        else:
            assert response.status_code == status, (request, response.text)
