from decimal import Decimal as D

import pytest

from apps.customers import wallets
from apps.customers.models import CreditGrant
from apps.usage.models import BillingEvent, BillingRecord
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(api_client, key, calls):
    body = api_client.post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 300}, format="json",
        **bearer(key),
    ).json()  # fmt: skip
    assert body["billing_status"] == "pending"
    return body["billing_id"]


def post(api_client, key, path, body):
    return api_client.post(f"/api/v1/billing/{path}", body, format="json", **bearer(key))


def transitions(billing_id):
    return list(
        BillingEvent.objects.filter(record__billing_id=billing_id).values_list(
            "from_status", "to_status", "billing_method"
        )
    )


def test_a_pending_charge_is_paid_from_the_wallet_once(api_client, key, org, pending):
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    request = {"billing_id": pending, "billing_method": "wallet_deduction"}

    first = post(api_client, key, "process", request)
    again = post(api_client, key, "process", request)

    assert first.status_code == again.status_code == 200
    assert first.json()["billing_status"] == "completed"
    assert wallets.wallet_balance(org) == D(7)
    assert transitions(pending) == [
        ("", "pending", "payment_charge"),
        ("pending", "completed", "wallet_deduction"),
    ]


def test_processing_with_too_little_in_the_wallet_is_402(api_client, key, pending):
    response = post(
        api_client, key, "process", {"billing_id": pending, "billing_method": "wallet_deduction"}
    )

    assert response.status_code == 402
    assert error_code(response) == "insufficient_wallet_balance"
    assert BillingRecord.objects.get(billing_id=pending).status == "pending"


def test_a_charge_is_queued_for_the_invoice(api_client, key, pending):
    response = post(
        api_client, key, "process",
        {"billing_id": pending, "billing_method": "payment_charge", "force_charge": True},
    )  # fmt: skip

    assert response.json()["billing_status"] == "processing"
    assert BillingEvent.objects.filter(
        record__billing_id=pending, reason="charge requested now"
    ).exists()


def test_an_unknown_billing_id_is_404(api_client, key):
    response = post(
        api_client, key, "process", {"billing_id": "bill_nope", "billing_method": "payment_charge"}
    )

    assert response.status_code == 404
    assert error_code(response) == "billing_record_not_found"


def test_another_organizations_record_is_not_found(api_client, key, pending, org):
    from apps.customers.services import issue_api_key
    from tests.customers.factories import OrganizationFactory

    stranger = issue_api_key(name="x", organization=OrganizationFactory()).raw_key

    response = post(
        api_client, stranger, "process", {"billing_id": pending, "billing_method": "payment_charge"}
    )

    assert response.status_code == 404


def test_a_wallet_payment_is_refunded_to_the_wallet_once(api_client, key, org, calls):
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    billing_id = api_client.post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 100}, format="json",
        **bearer(key),
    ).json()["billing_id"]  # fmt: skip
    assert wallets.wallet_balance(org) == D(9)

    first = post(api_client, key, "refund", {"billing_id": billing_id, "reason": "outage"})
    again = post(api_client, key, "refund", {"billing_id": billing_id, "reason": "outage"})

    assert first.json()["billing_status"] == again.json()["billing_status"] == "refunded"
    assert wallets.wallet_balance(org) == D(10)
    assert transitions(billing_id)[-1] == ("completed", "refunded", "wallet_deduction")


def test_credits_are_refunded_to_their_grant(api_client, key, org, calls):
    grant = wallets.grant_credits(organization=org, amount=D(5), reason="promo", granted_by="t")
    billing_id = api_client.post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 100}, format="json",
        **bearer(key),
    ).json()["billing_id"]  # fmt: skip

    post(api_client, key, "refund", {"billing_id": billing_id, "reason": "goodwill"})

    assert CreditGrant.objects.get(pk=grant.pk).remaining == D(5)


def test_a_pending_charge_is_voided_by_a_refund(api_client, key, org, pending):
    post(api_client, key, "refund", {"billing_id": pending, "reason": "duplicate job"})

    assert BillingRecord.objects.get(billing_id=pending).status == "refunded"
    assert wallets.wallet_balance(org) == D(0)


def test_a_refunded_record_cannot_be_processed(api_client, key, pending):
    post(api_client, key, "refund", {"billing_id": pending, "reason": "x"})

    response = post(
        api_client, key, "process", {"billing_id": pending, "billing_method": "payment_charge"}
    )

    assert response.status_code == 409
    assert error_code(response) == "invalid_status_transition"


def test_a_key_without_billing_write_cannot_refund(api_client, org, pending):
    from apps.customers.services import issue_api_key

    reader = issue_api_key(name="r", organization=org, scopes=["billing:read"]).raw_key

    response = post(api_client, reader, "refund", {"billing_id": pending, "reason": "x"})

    assert response.status_code == 403
