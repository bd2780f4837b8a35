"""The portal served for real (pytest-django's ``live_server``), an organisation on a plan
with the demo catalog's kinds of products, and its API key: what the client talks to."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import pytest
from billing_client import AsyncBillingClient, BillingClient

from tests.client.proxies import FlakyHttpProxy, TcpProxy


@dataclass
class Portal:
    url: str
    key: str
    organization: object
    plan: object


@pytest.fixture
def portal(live_server, settings) -> Portal:
    """Products as the demo catalog names them, priced on the organisation's plan:

    * ``calls``: $0.01 a call (for budgets);
    * ``agent-run``: $0.02 an execution, the plan includes 3 a month;
    * ``gpt-4o-mini``: input $0.15 and output $0.60 per million tokens;
    * ``gateway-request``: $0.0001 a request; ``object-storage``: $0.023 a GB-month.
    """
    from apps.customers.services import issue_api_key
    from tests.customers.factories import OrganizationFactory
    from tests.pricing.factories import (
        IncludedQuotaFactory,
        PlanFactory,
        ProductFactory,
        ServiceTypeFactory,
        price,
    )

    settings.API_THROTTLE_RATE = None
    plan = PlanFactory(code="client-plan")
    organization = OrganizationFactory(slug="client-co", plan=plan)
    calls = ProductFactory(
        code="calls", unit="call", service_type=ServiceTypeFactory(code="api_gateway")
    )
    price(calls, unit_price="0.01")
    runs = ProductFactory(
        code="agent-run", unit="execution", service_type=ServiceTypeFactory(code="agent_execution")
    )
    price(runs, unit_price="0.02")
    IncludedQuotaFactory(plan=plan, product=runs, quantity=Decimal(3))
    mini = ProductFactory(code="gpt-4o-mini", dimensions=["input_tokens", "output_tokens"])
    price(mini, dimension="input_tokens", unit_price="0.00000015")
    price(mini, dimension="output_tokens", unit_price="0.0000006")
    gateway = ProductFactory(
        code="gateway-request", unit="request", service_type=ServiceTypeFactory(code="api_gateway")
    )
    price(gateway, unit_price="0.0001")
    storage = ProductFactory(
        code="object-storage",
        unit="gb_month",
        service_type=ServiceTypeFactory(code="storage_minio"),
    )
    price(storage, unit_price="0.023")
    key = issue_api_key(name="client tests", organization=organization).raw_key
    return Portal(url=live_server.url, key=key, organization=organization, plan=plan)


# A generous timeout: on a loaded machine a first request can be slow, and a timed-out
# attempt would be retried (correctly, as a duplicate) where a test expects "accepted".
TIMEOUT = 30.0


@pytest.fixture
def billing(portal):
    """A BillingClient with the organisation's key, retrying quickly."""
    with BillingClient(portal.url, portal.key, backoff_base=0.05, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def async_client_of(portal):
    """Makes an AsyncBillingClient (made inside the event loop that uses it)."""

    def make(**options) -> AsyncBillingClient:
        options.setdefault("backoff_base", 0.05)
        options.setdefault("timeout", TIMEOUT)
        return AsyncBillingClient(portal.url, portal.key, **options)

    return make


@pytest.fixture
def tcp_proxy(live_server):
    """A TCP proxy in front of the portal that can be taken down and brought back."""
    proxy = TcpProxy(live_server.url)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def flaky_proxy(live_server):
    """An HTTP proxy that forwards each request to the portal and, for the first attempts
    it is told to spoil, throws the portal's answer away and answers 503."""
    proxy = FlakyHttpProxy(live_server.url)
    proxy.start()
    yield proxy
    proxy.stop()


def usage_count(organization=None) -> int:
    from apps.usage.models import UsageEvent

    events = UsageEvent.objects.all()
    if organization is not None:
        events = events.filter(organization=organization)
    return events.count()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def assert_counts_add_up(stats: dict) -> None:
    """Every event ``track()`` accepted is flushed, failed, pending or dropped: exactly one."""
    assert stats["tracked"] == (
        stats["flushed"] + stats["failed"] + stats["pending"] + stats["dropped"]
    ), stats
