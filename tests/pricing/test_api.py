from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command

from apps.customers import demo
from apps.pricing.cost_engine import PricingModel
from apps.pricing.services import TierSpec
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code
from tests.pricing.factories import IncludedQuotaFactory, PlanFactory, ProductFactory, price

pytestmark = pytest.mark.django_db

CALCULATE = "/api/v1/billing/calculate"
SEED_003_RESPONSE_FIELDS = {
    "success",
    "product_id",
    "usage_amount",
    "unit_price",
    "total_cost",
    "currency",
    "is_free_tier",
    "is_included_in_subscription",
    "suggested_billing_method",
    "available_billing_methods",
}


@pytest.fixture
def demo_portal():
    # The demo catalog and organisation, before any usage used its inclusions.
    call_command("seed_demo", "--without-usage", stdout=StringIO())


@pytest.fixture
def plan():
    return PlanFactory()


@pytest.fixture
def customer(plan):
    return OrganizationFactory(plan=plan)


@pytest.fixture
def key(customer):
    from apps.customers.services import issue_api_key

    return issue_api_key(name="k", organization=customer).raw_key


def post(api_client, key, body, path=CALCULATE):
    return api_client.post(path, body, format="json", **bearer(key))


def test_seed_003s_calculate_example_answers_every_field_on_the_demo_catalog(
    api_client, demo_portal
):
    response = post(
        api_client,
        demo.DEMO_ORGANIZATION_KEY,
        {
            "user_id": "user123",
            "product_id": "gpt-4",
            "service_type": "model_inference",
            "usage_amount": 1000,
            "pricing_context": {"subscription_id": "sub123"},
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == SEED_003_RESPONSE_FIELDS | {"breakdown"}
    assert body["success"] is True
    assert body["product_id"] == "gpt-4"
    assert body["usage_amount"] == "1000"
    assert body["currency"] == "USD"
    # The demo organisation is on Pro, whose monthly inclusion covers 1,000 tokens.
    assert body["is_included_in_subscription"] is True
    assert body["suggested_billing_method"] == "subscription_included"
    assert body["unit_price"] == "0.00003"  # GPT-4 input: $30 per million tokens
    assert body["total_cost"] == "0.00"
    line = body["breakdown"]["dimensions"][0]
    assert line["dimension"] == "input_tokens" and line["included_quantity"] == "1000"


def test_calculate_prices_input_and_output_tokens_separately(api_client, demo_portal):
    response = api_client.post(
        CALCULATE,
        {
            "organization_id": "demo",
            "product_id": "claude-sonnet-4",
            "usage_details": {"input_tokens": 2_000_000, "output_tokens": 500_000},
            "at": "2026-11-01T00:00:00Z",
        },
        format="json",
        HTTP_X_API_KEY=demo.DEMO_SERVICE_KEY,
    )

    body = response.json()
    assert response.status_code == 200, body
    lines = {line["dimension"]: line for line in body["breakdown"]["dimensions"]}
    # Pro includes 1,000,000 model-inference tokens: input first.
    assert lines["input_tokens"]["included_quantity"] == "1000000"
    assert lines["input_tokens"]["amount"] == "3.00"  # 1M x $3/M
    assert lines["output_tokens"]["amount"] == "7.50"  # 0.5M x $15/M
    assert body["total_cost"] == "10.50"
    assert body["is_included_in_subscription"] is False
    # The demo's wallet holds more than $10.50 and its credits less: recording it now
    # would pay from the wallet, and calculate says so.
    assert body["suggested_billing_method"] == "wallet_deduction"
    assert body["available_billing_methods"] == ["wallet_deduction", "payment_charge"]


def _calculate(api_client, key, amount):
    response = api_client.post(CALCULATE, {"product_id": "calls", "usage_amount": amount},
                               format="json", **bearer(key))  # fmt: skip
    assert response.status_code == 200, response.content
    return response.json()


def test_calculate_predicts_the_method_record_then_uses(api_client, customer, key, calls):
    from apps.customers import wallets

    def record(amount, n):
        response = api_client.post(
            "/api/v1/usage/record", {"product_id": "calls", "usage_amount": amount},
            format="json", HTTP_IDEMPOTENCY_KEY=f"predict-{n}", **bearer(key))  # fmt: skip
        assert response.status_code == 201, response.content
        return response.json()["billing_method"]

    body = _calculate(api_client, key, 100)  # $1.00, no wallet, no credits
    assert body["available_billing_methods"] == ["payment_charge"]
    assert record(100, 1) == body["suggested_billing_method"] == "payment_charge"

    wallets.top_up_wallet(organization=customer, amount=D("99.90"), actor="t", reason="t")
    body = _calculate(api_client, key, 100)
    assert body["available_billing_methods"] == ["wallet_deduction", "payment_charge"]
    assert record(100, 2) == body["suggested_billing_method"] == "wallet_deduction"

    wallets.grant_credits(organization=customer, amount=D(2), granted_by="t", reason="t")
    body = _calculate(api_client, key, 100)
    assert body["available_billing_methods"][0] == "credit_consumption"
    assert record(100, 3) == body["suggested_billing_method"] == "credit_consumption"
    # More than the credits left ($1) but within the wallet ($98.90): the wallet.
    body = _calculate(api_client, key, 500)
    assert body["available_billing_methods"] == ["wallet_deduction", "payment_charge"]
    assert record(500, 4) == body["suggested_billing_method"]


def test_estimate_prices_from_where_the_period_stands(api_client, key, llm):
    # The plan includes 1,000 tokens a month; once used up, estimate charges like record.
    estimate = "/api/v1/pricing/estimate"
    first = api_client.post(estimate, {"product_id": "llm", "input_tokens": 1000},
                            format="json", **bearer(key)).json()  # fmt: skip
    assert first["total_cost"] == "0.00"
    recorded = api_client.post(
        "/api/v1/usage/record", {"product_id": "llm", "dimensions": {"input_tokens": 1000}},
        format="json", HTTP_IDEMPOTENCY_KEY="use-it-up", **bearer(key))  # fmt: skip
    assert recorded.status_code == 201, recorded.content
    after = api_client.post(estimate, {"product_id": "llm", "input_tokens": 3000},
                            format="json", **bearer(key)).json()  # fmt: skip
    calculated = _calculate_llm(api_client, key, 3000)
    assert after["total_cost"] == calculated["total_cost"] != "0.00"
    assert after["breakdown"]["dimensions"][0]["included_quantity"] == "0"


def _calculate_llm(api_client, key, tokens):
    response = api_client.post(CALCULATE, {"product_id": "llm", "dimensions": {
        "input_tokens": tokens}}, format="json", **bearer(key))  # fmt: skip
    assert response.status_code == 200, response.content
    return response.json()


def test_a_negative_dimension_quantity_is_a_400_not_a_500(api_client, demo_portal):
    from tests.http import error_code

    response = api_client.post(
        CALCULATE,
        {
            "organization_id": "demo",
            "product_id": "claude-sonnet-4",
            "usage_details": {"input_tokens": -5, "output_tokens": 10},
        },
        format="json",
        HTTP_X_API_KEY=demo.DEMO_SERVICE_KEY,
    )

    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "input_tokens" in str(response.json()["error"]["details"])


def test_sub_cent_costs_keep_their_precision(api_client, customer, key, plan):
    product = ProductFactory(code="embed", dimensions=["units"])
    price(product, unit_price="0.00000002")

    body = post(api_client, key, {"product_id": "embed", "usage_amount": "1234"}).json()

    assert body["total_cost"] == "0.00002468"
    assert body["unit_price"] == "0.00000002"


def test_a_free_allowance_answers_is_free_tier(api_client, customer, key, plan):
    product = ProductFactory(code="calls")
    price(product, plan=plan, unit_price="0.01", free_allowance=D(100))

    body = post(api_client, key, {"product_id": "calls", "usage_amount": 50}).json()

    assert body["is_free_tier"] is True
    assert body["total_cost"] == "0.00"


def test_volume_tiers_in_calculate(api_client, customer, key, plan):
    product = ProductFactory(code="vol")
    price(
        product,
        plan=plan,
        pricing_model=PricingModel.VOLUME,
        tiers=[TierSpec(D(100), D(1)), TierSpec(None, D("0.5"))],
    )

    body = post(api_client, key, {"product_id": "vol", "usage_amount": 50}).json()

    assert body["total_cost"] == "50.00"


def test_an_unknown_product_is_404_product_not_found(api_client, key):
    response = post(api_client, key, {"product_id": "no-such-model", "usage_amount": 1})

    assert response.status_code == 404
    assert error_code(response) == "product_not_found"


def test_a_product_without_a_price_is_price_not_configured(api_client, key):
    ProductFactory(code="unpriced")

    response = post(api_client, key, {"product_id": "unpriced", "usage_amount": 1})

    assert response.status_code == 422
    assert error_code(response) == "price_not_configured"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"product_id": "p", "usage_amount": -1}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": "NaN"}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": "Infinity"}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": "-Infinity"}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": "lots"}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": 1e300}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": 10000000000000000}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": 0.0000000000001}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": true}', "usage_amount"),
        ('{"product_id": "p", "usage_amount": 1, "currency": "XYZ"}', "currency"),
        ('{"product_id": "p", "usage_amount": 1, "currency": "dollars"}', "currency"),
        ('{"product_id": "p", "dimensions": {"units": -5}}', "dimensions"),
        ('{"usage_amount": 1}', "product_id"),
    ],
)
def test_bad_quantities_and_currencies_are_400_with_field_errors(api_client, key, body, field):
    ProductFactory(code="p")

    response = api_client.post(CALCULATE, body, content_type="application/json", **bearer(key))

    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert field in response.json()["error"]["details"]["fields"]


def test_json_nan_and_infinity_literals_are_refused_as_malformed(api_client, key):
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = api_client.post(
            CALCULATE,
            '{"product_id": "p", "usage_amount": ' + literal + "}",
            content_type="application/json",
            **bearer(key),
        )
        assert response.status_code == 400
        assert error_code(response) == "malformed_request"


def test_an_unknown_dimension_is_a_field_error(api_client, key):
    product = ProductFactory(code="llm", dimensions=["input_tokens", "output_tokens"])
    price(product, dimension="input_tokens")

    response = post(api_client, key, {"product_id": "llm", "dimensions": {"thinking_tokens": 5}})

    assert response.status_code == 400
    assert "thinking_tokens" in response.json()["error"]["details"]["fields"]


def test_a_service_type_that_does_not_match_the_product_is_a_field_error(api_client, key):
    price(ProductFactory(code="p"))

    response = post(
        api_client, key, {"product_id": "p", "usage_amount": 1, "service_type": "storage_minio"}
    )

    assert response.status_code == 400
    assert "service_type" in response.json()["error"]["details"]["fields"]


def test_a_currency_other_than_the_plans_is_a_field_error(api_client, key):
    price(ProductFactory(code="p"))

    response = post(api_client, key, {"product_id": "p", "usage_amount": 1, "currency": "EUR"})

    assert response.status_code == 400
    assert "currency" in response.json()["error"]["details"]["fields"]


def test_usage_amount_contradicting_the_dimensions_is_a_field_error(api_client, key):
    price(ProductFactory(code="p"))

    response = post(
        api_client, key, {"product_id": "p", "usage_amount": 10, "dimensions": {"units": 5}}
    )

    assert response.status_code == 400
    assert "usage_amount" in response.json()["error"]["details"]["fields"]


def test_an_organization_key_cannot_calculate_for_another_organization(api_client, key):
    other = OrganizationFactory()
    price(ProductFactory(code="p"))

    response = post(
        api_client, key, {"product_id": "p", "usage_amount": 1, "organization_id": other.slug}
    )

    assert response.status_code == 404
    assert error_code(response) == "organization_not_found"


def test_the_price_sheet_lists_the_plans_prices_and_inclusions(api_client, customer, key, plan):
    product = ProductFactory(code="llm", dimensions=["input_tokens", "output_tokens"])
    price(product, dimension="input_tokens", unit_price="0.000002")
    price(product, plan=plan, dimension="output_tokens", unit_price="0.000006")
    IncludedQuotaFactory(plan=plan, product=product, quantity=D(1_000_000))
    ProductFactory(code="unpriced")

    body = api_client.get("/api/v1/pricing/products", **bearer(key)).json()

    assert body["plan"] == plan.code and body["currency"] == "USD"
    products = {p["product_id"]: p for p in body["products"]}
    prices = {p["dimension"]: p for p in products["llm"]["prices"]}
    assert prices["input_tokens"]["source"] == "catalog"
    assert prices["input_tokens"]["unit_price"] == "0.000002"
    assert prices["output_tokens"]["source"] == "plan"
    assert products["llm"]["included"] == {
        "quantity": "1000000",
        "period": "month",
        "scope": "product:llm",
    }
    assert products["unpriced"]["prices"][0]["configured"] is False


def test_one_products_price_sheet(api_client, key):
    price(ProductFactory(code="p"), unit_price="0.5")

    response = api_client.get("/api/v1/pricing/products/p", **bearer(key))
    missing = api_client.get("/api/v1/pricing/products/nope", **bearer(key))

    assert response.status_code == 200
    assert response.json()["prices"][0]["unit_price"] == "0.5"
    assert missing.status_code == 404 and error_code(missing) == "product_not_found"


def test_estimate_from_input_and_output_tokens(api_client, key):
    product = ProductFactory(code="llm", dimensions=["input_tokens", "output_tokens"])
    price(product, dimension="input_tokens", unit_price="0.000003")
    price(product, dimension="output_tokens", unit_price="0.000015")

    response = post(
        api_client,
        key,
        {"product_id": "llm", "input_tokens": 1000, "output_tokens": 500},
        path="/api/v1/pricing/estimate",
    )

    assert response.status_code == 200, response.content
    assert response.json()["total_cost"] == "0.0105"


def test_estimate_needs_some_quantity(api_client, key):
    response = post(api_client, key, {"product_id": "llm"}, path="/api/v1/pricing/estimate")

    assert response.status_code == 400
    assert error_code(response) == "validation_error"
