from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model

from apps.customers import wallets
from apps.customers.models import CreditGrant, Wallet, WalletEntry
from apps.usage.ingestion import EventInput, ingest
from apps.usage.models import BillingEvent, BillingRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(
        get_user_model().objects.create_superuser("fin", "fin@example.com", "pw-fin-12345")
    )
    return client


def paid_from_wallet(org):
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    event = EventInput(idempotency_key="e1", product_id="calls", fingerprint="f",
                       usage_amount=D(100))  # fmt: skip
    return ingest(organization=org, events=[event])[0].record


def test_refunding_in_the_admin_asks_for_a_reason_and_records_it(staff, org, calls):
    record = paid_from_wallet(org)
    url = "/admin/usage/billingrecord/"
    selection = {"action": "refund", "_selected_action": [record.pk]}

    confirmation = staff.post(url, selection)
    done = staff.post(url, {**selection, "apply": "1", "reason": "model outage"})

    assert b"Refund billing records" in confirmation.content
    assert done.status_code == 302
    assert BillingRecord.objects.get(pk=record.pk).status == "refunded"
    event = BillingEvent.objects.filter(record=record).last()
    assert (event.reason, event.actor) == ("model outage", "staff:fin")
    assert wallets.wallet_balance(org) == D(10)


def test_a_staff_top_up_adds_a_ledger_entry_with_its_reason(staff, org):
    wallet = Wallet.objects.create(organization=org, currency="USD")

    staff.post(
        "/admin/customers/wallet/",
        {"action": "top_up", "_selected_action": [wallet.pk], "apply": "1", "amount": "25",
         "reason": "wire transfer 2026-11", "reference": "wire-123"},
    )  # fmt: skip

    entry = WalletEntry.objects.get()
    assert (entry.amount, entry.kind, entry.reason) == (D(25), "top_up", "wire transfer 2026-11")
    assert wallets.wallet_balance(org) == D(25)


def test_granting_credits_in_the_admin(staff, org):
    wallet = Wallet.objects.create(organization=org, currency="USD")

    staff.post(
        "/admin/customers/wallet/",
        {"action": "grant_credits", "_selected_action": [wallet.pk], "apply": "1",
         "amount": "50", "reason": "launch promo"},
    )  # fmt: skip

    grant = CreditGrant.objects.get()
    assert (grant.amount, grant.remaining, grant.granted_by) == (D(50), D(50), "staff:fin")


def test_ledgers_are_read_only_in_the_admin(staff, org, calls):
    record = paid_from_wallet(org)
    entry = WalletEntry.objects.filter(kind="deduction").get()

    for url in (
        f"/admin/customers/walletentry/{entry.pk}/change/",
        f"/admin/usage/billingevent/{BillingEvent.objects.get(record=record).pk}/change/",
    ):
        page = staff.get(url)
        assert page.status_code == 200
        assert b'name="amount"' not in page.content
        assert staff.post(url.replace("change", "delete"), {"post": "yes"}).status_code == 403
    assert staff.get("/admin/customers/walletentry/add/").status_code == 403
