from decimal import Decimal

import pytest

from apps.customers.services import issue_api_key
from tests.customers.factories import OrganizationFactory
from tests.pricing.factories import IncludedQuotaFactory, PlanFactory, ProductFactory, price


@pytest.fixture
def plan(db):
    return PlanFactory(code="usage-plan")


@pytest.fixture
def org(plan):
    return OrganizationFactory(slug="acme", plan=plan, time_zone="Europe/Berlin")


@pytest.fixture
def key(org):
    return issue_api_key(name="svc", organization=org).raw_key


@pytest.fixture
def calls(plan):
    """A product at $0.01 per call."""
    product = ProductFactory(code="calls")
    price(product, unit_price="0.01")
    return product


@pytest.fixture
def llm(plan):
    """Input tokens $2/M and output tokens $8/M; the plan includes 1,000 tokens a month."""
    product = ProductFactory(code="llm", dimensions=["input_tokens", "output_tokens"])
    price(product, dimension="input_tokens", unit_price="0.000002")
    price(product, dimension="output_tokens", unit_price="0.000008")
    IncludedQuotaFactory(plan=plan, product=product, quantity=Decimal(1000))
    return product
