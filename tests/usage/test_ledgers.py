"""Wallet balance always equals the sum of its entries; no path edits or deletes one."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.ledger import AppendOnlyViolation
from apps.customers import wallets
from apps.customers.models import CreditEntry, CreditGrant, Wallet, WalletEntry
from apps.usage import services
from apps.usage.ingestion import EventInput, fingerprint, ingest
from apps.usage.models import BillingEvent

pytestmark = pytest.mark.django_db


def assert_books_balance(org):
    # Summed in Python: SQLite's SUM() works in floating point; PostgreSQL's is exact.
    wallet = Wallet.objects.filter(organization=org).first()
    if wallet is not None:
        entries = WalletEntry.objects.filter(wallet=wallet).values_list("amount", flat=True)
        assert wallet.balance == sum(entries, D(0))
    for grant in CreditGrant.objects.filter(organization=org):
        entries = CreditEntry.objects.filter(grant=grant).values_list("amount", flat=True)
        assert grant.remaining == sum(entries, D(0))


def event(n: int, amount: int, method=None) -> EventInput:
    content = {"n": n, "amount": amount, "method": method}
    return EventInput(
        idempotency_key=f"e{n}", product_id="calls", fingerprint=fingerprint(content),
        usage_amount=D(amount), billing_method=method,
    )  # fmt: skip


operations = st.lists(
    st.one_of(
        st.tuples(st.just("top_up"), st.integers(min_value=1, max_value=500)),
        st.tuples(st.just("grant"), st.integers(min_value=1, max_value=300)),
        st.tuples(st.just("use"), st.integers(min_value=0, max_value=40_000)),
        st.tuples(st.just("refund"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("expire"), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations)
def test_balances_always_equal_the_sum_of_their_entries(org, calls, steps):
    billing_ids = []
    for number, (operation, value) in enumerate(steps):
        if operation == "top_up":
            wallets.top_up_wallet(organization=org, amount=D(value), actor="t", reason="t")
        elif operation == "grant":
            wallets.grant_credits(
                organization=org, amount=D(value), reason="promo", granted_by="t",
                expires_at=timezone.now() + timedelta(days=value % 3),
            )  # fmt: skip
        elif operation == "use":
            key = f"{id(steps)}-{number}"
            outcome = ingest(
                organization=org,
                events=[EventInput(idempotency_key=key, product_id="calls",
                                   fingerprint=key, usage_amount=D(value))],
            )[0]  # fmt: skip
            billing_ids.append(outcome.record.billing_id)
        elif operation == "refund" and billing_ids:
            services.refund_billing(
                organization=org, billing_id=billing_ids[value % len(billing_ids)], actor="t",
                reason="t",
            )  # fmt: skip
        elif operation == "expire":
            wallets.expire_credits(now=timezone.now() + timedelta(days=1))
        assert_books_balance(org)
        assert not Wallet.objects.filter(organization=org, balance__lt=0).exists()


def test_wallet_entries_cannot_be_edited_or_deleted(org):
    entry = wallets.top_up_wallet(organization=org, amount=D(5), actor="t", reason="t")

    entry.amount = D(500)
    with pytest.raises(AppendOnlyViolation):
        entry.save()
    with pytest.raises(AppendOnlyViolation):
        entry.delete()
    with pytest.raises(AppendOnlyViolation):
        WalletEntry.objects.filter(pk=entry.pk).update(amount=D(500))
    with pytest.raises(AppendOnlyViolation):
        WalletEntry.objects.filter(pk=entry.pk).delete()
    assert WalletEntry.objects.get(pk=entry.pk).amount == D(5)


def test_credit_and_billing_events_are_append_only_too(org, calls):
    grant = wallets.grant_credits(organization=org, amount=D(5), reason="r", granted_by="t")
    outcome = ingest(organization=org, events=[event(1, 10)])[0]

    for queryset in (CreditEntry.objects.filter(grant=grant),
                     BillingEvent.objects.filter(record=outcome.record)):  # fmt: skip
        with pytest.raises(AppendOnlyViolation):
            queryset.update(actor="someone else")
        with pytest.raises(AppendOnlyViolation):
            queryset.delete()


def test_a_top_up_with_a_reference_is_written_once(org):
    for _ in range(3):
        wallets.top_up_wallet(organization=org, amount=D(7), actor="t", reason="t",
                              reference="cs_test_1")  # fmt: skip

    assert wallets.wallet_balance(org) == D(7)
    assert WalletEntry.objects.count() == 1


def test_the_wallet_never_goes_negative_without_an_overdraft(org):
    wallets.top_up_wallet(organization=org, amount=D(5), actor="t", reason="t")

    with pytest.raises(wallets.InsufficientWalletBalance):
        wallets.adjust_wallet(organization=org, amount=D(-6), actor="t", reason="t")
    assert wallets.wallet_balance(org) == D(5)

    Wallet.objects.filter(organization=org).update(overdraft_limit=D(10))
    wallets.adjust_wallet(organization=org, amount=D(-12), actor="t", reason="t")
    assert wallets.wallet_balance(org) == D(-7)
    assert_books_balance(org)


def test_expired_credits_are_written_off_once(org):
    grant = wallets.grant_credits(organization=org, amount=D(5), reason="r", granted_by="t",
                                  expires_at=timezone.now() + timedelta(hours=1))  # fmt: skip
    later = timezone.now() + timedelta(hours=2)

    assert wallets.expire_credits(now=later) == 1
    assert wallets.expire_credits(now=later) == 0
    grant.refresh_from_db()
    assert grant.remaining == 0
    assert_books_balance(org)
