"""check_and_record and @require_entitlement: the usage is allowed and recorded in one
step, or refused, and then the guarded work never runs."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from billing_client import (
    BillingClient,
    BudgetExceeded,
    QuotaExceeded,
    require_entitlement,
)

from tests.client.conftest import usage_count

pytestmark = pytest.mark.django_db(transaction=True)


def test_check_and_record_allows_what_the_plan_includes_and_refuses_the_rest(billing, portal):
    checks = [billing.check_and_record("executions", Decimal(1)) for _ in range(4)]

    assert [check.allowed for check in checks] == [True, True, True, False]
    assert checks[0].product_id == "agent-run"
    assert checks[0].record.billing_method == "subscription_included"
    assert checks[0].record.total_cost == Decimal(0)
    refusal = checks[3]
    assert isinstance(refusal.error, QuotaExceeded) and refusal.record is None
    assert refusal.quantity == Decimal(1)
    with pytest.raises(QuotaExceeded):
        refusal.raise_if_refused()
    assert usage_count() == 3


def test_beyond_the_inclusion_only_a_hard_budget_refuses(billing, portal):
    billing.create_budget(name="runs", limit=Decimal("0.04"))

    checks = [
        billing.check_and_record("agent-run", 1, included_only=False) for _ in range(6)
    ]  # 3 included, 2 at $0.02, then over the $0.04 budget

    assert [check.allowed for check in checks] == [True, True, True, True, True, False]
    assert [c.record.billing_method for c in checks[3:5]] == ["payment_charge"] * 2
    assert checks[4].remaining_budget == Decimal(0)
    assert isinstance(checks[5].error, BudgetExceeded)
    assert checks[5].error.limit == Decimal("0.04")
    assert usage_count() == 5


def test_the_decorated_function_does_not_run_when_the_quota_would_be_exceeded(billing, portal):
    ran = []

    @require_entitlement("executions", quantity=Decimal("1"), client=billing)
    def run_workflow(name: str) -> str:
        ran.append(name)
        return f"ran {name}"

    answers = [run_workflow(name) for name in ("a", "b", "c")]
    with pytest.raises(QuotaExceeded):
        run_workflow("d")

    assert answers == ["ran a", "ran b", "ran c"]
    assert ran == ["a", "b", "c"]  # "d" never ran
    assert usage_count() == 3


def test_the_decorator_records_for_the_user_and_organisation_its_arguments_name(portal):
    from apps.customers.services import issue_api_key
    from apps.usage.models import UsageEvent

    service_key = issue_api_key(name="platform", service=True).raw_key
    with BillingClient(portal.url, service_key) as platform:

        @require_entitlement(
            "agent-run",
            client=lambda: platform,
            organization_id=lambda org, user: org,
            user_id=lambda org, user: user,
        )
        def run_for(org: str, user: str) -> str:
            return user

        assert run_for("client-co", "dana") == "dana"

    assert UsageEvent.objects.get().user_id == "dana"


def test_an_async_function_is_guarded_by_an_async_client(portal, async_client_of):
    ran = []

    async def scenario():
        async with async_client_of() as client:

            @require_entitlement("executions", client=client)
            async def run_workflow(name: str) -> str:
                ran.append(name)
                return name

            for name in ("a", "b", "c"):
                await run_workflow(name)
            with pytest.raises(QuotaExceeded):
                await run_workflow("d")

    asyncio.run(scenario())

    assert ran == ["a", "b", "c"]
    assert usage_count() == 3


def test_an_async_function_may_be_guarded_by_a_blocking_client(billing, portal):
    ran = []

    @require_entitlement("executions", quantity=3, client=billing)
    async def run_batch() -> None:
        ran.append(True)

    asyncio.run(run_batch())
    with pytest.raises(QuotaExceeded):
        asyncio.run(run_batch())

    assert ran == [True]


def test_a_plain_function_cannot_be_guarded_by_an_async_client(portal, async_client_of):
    ran = []
    client = async_client_of()

    @require_entitlement("executions", client=client)
    def run_workflow() -> None:
        ran.append(True)

    with pytest.raises(TypeError):
        run_workflow()

    assert ran == []
    assert usage_count() == 0
    asyncio.run(client.close())


def test_the_decorated_function_keeps_its_name_docstring_and_the_wrapped_original(billing):
    def run_workflow(workflow_id):
        """Runs one workflow."""

    async def generate(prompt):
        """Generates text."""

    guarded = require_entitlement("executions", client=billing)(run_workflow)
    guarded_async = require_entitlement("tokens", client=billing)(generate)

    assert (guarded.__name__, guarded.__doc__) == ("run_workflow", "Runs one workflow.")
    assert guarded.__wrapped__ is run_workflow
    assert (guarded_async.__name__, guarded_async.__doc__) == ("generate", "Generates text.")
    assert guarded_async.__wrapped__ is generate
    assert asyncio.iscoroutinefunction(guarded_async)
