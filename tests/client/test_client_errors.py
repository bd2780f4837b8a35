"""The portal's refusals arrive as typed exceptions carrying its code, message and figures."""

from __future__ import annotations

from decimal import Decimal

import pytest
from billing_client import (
    AuthenticationFailed,
    BillingClient,
    BillingError,
    BudgetExceeded,
    IdempotencyConflict,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ValidationFailed,
)

from tests.client.conftest import usage_count

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unknown_key_is_authentication_failed(portal):
    bad = BillingClient(portal.url, "bp_org_nothing0_NoSuchKeyAtAll000000000000000000000")
    with bad, pytest.raises(AuthenticationFailed) as refused:
        bad.stats()

    assert refused.value.status == 401 and refused.value.code == "invalid_api_key"
    assert isinstance(refused.value, BillingError) and not refused.value.is_transient


def test_a_hard_budget_refusal_is_budget_exceeded_with_its_figures(billing, portal):
    budget = billing.create_budget(name="cap", limit=Decimal("1.00"))
    billing.record_usage("calls", 60)

    with pytest.raises(BudgetExceeded) as refused:
        billing.record_usage("calls", 50)

    error = refused.value
    assert (error.status, error.code) == (402, "budget_exceeded")
    assert (error.budget_id, error.budget_name) == (budget.id, "cap")
    assert (error.limit, error.current_usage, error.requested) == (
        Decimal("1.00"), Decimal("0.60"), Decimal("0.50"),
    )  # fmt: skip
    assert error.remaining == Decimal("0.40") and isinstance(error, PaymentRequired)
    assert usage_count() == 1


def test_usage_beyond_the_plans_inclusion_is_quota_exceeded(billing, portal):
    billing.record_usage("agent-run", 3, billing_method="subscription_included")

    with pytest.raises(QuotaExceeded) as refused:
        billing.record_usage("agent-run", 1, billing_method="subscription_included")

    assert refused.value.code == "not_included_in_subscription"
    assert refused.value.amount == Decimal("0.02")
    assert usage_count() == 1


def test_a_key_reused_for_other_content_is_an_idempotency_conflict(billing, portal):
    billing.record_usage("calls", 1, idempotency_key="job-9")

    with pytest.raises(IdempotencyConflict) as refused:
        billing.record_usage("calls", 2, idempotency_key="job-9")

    assert refused.value.status == 409 and refused.value.idempotency_key == "job-9"
    assert usage_count() == 1


def test_invalid_fields_are_validation_failed_naming_them(billing, portal):
    with pytest.raises(ValidationFailed) as refused:
        billing.record_usage("calls", -1)

    assert refused.value.code == "validation_error" and "usage_amount" in refused.value.fields


def test_a_float_never_leaves_the_client(billing, portal):
    with pytest.raises(TypeError, match="float"):
        billing.record_usage("calls", 0.1)

    assert usage_count() == 0


def test_an_unknown_product_is_not_found(billing, portal):
    with pytest.raises(NotFound) as refused:
        billing.product("no-such-product")

    assert (refused.value.status, refused.value.code) == (404, "product_not_found")


def test_a_key_without_the_scope_is_permission_denied(portal):
    from apps.customers.services import issue_api_key

    reader = issue_api_key(
        name="reader", organization=portal.organization, scopes=["billing:read"]
    ).raw_key
    with BillingClient(portal.url, reader) as client:
        client.stats()
        with pytest.raises(PermissionDenied) as refused:
            client.record_usage("calls", 1)

    assert refused.value.status == 403


def test_a_service_key_names_the_organisation_it_acts_for(portal):
    from apps.customers.services import issue_api_key

    service_key = issue_api_key(name="platform", service=True).raw_key
    anonymous = BillingClient(portal.url, service_key, max_retries=0)
    with anonymous, pytest.raises(ValidationFailed) as refused:
        anonymous.record_usage("calls", 1)
    with BillingClient(portal.url, service_key, organization_id="client-co") as platform:
        recorded = platform.record_usage("calls", 1)

    assert refused.value.code == "organization_required"
    assert recorded.organization_id == "client-co"


def test_too_many_requests_is_rate_limited_with_the_wait(portal, settings):
    settings.API_THROTTLE_RATE = "2/hour"  # one window for the whole test
    with BillingClient(portal.url, portal.key, max_retries=0) as client:
        client.record_usage("calls", 1)
        client.record_usage("calls", 1)
        with pytest.raises(RateLimited) as refused:
            client.record_usage("calls", 1)

    assert refused.value.status == 429 and refused.value.code == "throttled"
    assert 1 <= refused.value.retry_after <= 3601
    assert refused.value.is_transient
