"""Writes on billing records after ingestion: processing, status changes, refunds.

Every status change is a BillingEvent row (who, why, how much), written in the same
transaction as the change, under a lock on the record; a repeated call that finds the
record already where it was asked to go changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.core import period_lock
from apps.customers import wallets
from apps.customers.models import CreditEntry, Organization
from apps.customers.wallets import Funds
from apps.pricing.models import BillingMethod
from apps.usage.errors import (
    BillingRecordNotFound,
    InsufficientCredits,
    InsufficientWalletBalance,
    InvalidStatusTransition,
    NotIncludedInSubscription,
)
from apps.usage.ingestion import bump_daily_usage
from apps.usage.models import BillingEvent, BillingRecord, BillingStatus

S = BillingStatus
ALLOWED = {
    S.PENDING: {S.PROCESSING, S.COMPLETED, S.FAILED, S.REFUNDED},
    S.PROCESSING: {S.COMPLETED, S.FAILED, S.REFUNDED},
    S.FAILED: {S.PENDING, S.PROCESSING, S.COMPLETED, S.REFUNDED},
    S.COMPLETED: {S.REFUNDED},
    S.REFUNDED: set(),
}


def locked_record(*, organization: Organization | None, billing_id: str) -> BillingRecord:
    """The record, locked; first the organisation's period lock (shared), taken before any
    row lock as ingestion takes it, so a freeze waiting for it never closes a cycle."""
    queryset = BillingRecord.objects.filter(billing_id=billing_id)
    if organization is not None:
        queryset = queryset.filter(organization=organization)
        organization_id = organization.pk
    else:
        organization_id = queryset.values_list("organization_id", flat=True).first()
    record = None
    if organization_id is not None:
        period_lock.stamp(organization_id)
        record = queryset.select_for_update().first()
    if record is None:
        raise BillingRecordNotFound(details={"billing_id": billing_id})
    return record


def transition(
    *,
    record: BillingRecord,
    to_status: str,
    actor: str,
    reason: str,
    billing_method: str | None = None,
    amount: Decimal | None = None,
) -> BillingRecord:
    """Moves a locked record to ``to_status`` and writes the billing event for it. Raises
    InvalidStatusTransition for a move the status machine does not allow. (The period lock,
    which ``locked_record`` took, is held again at once: it gives the stamp.)"""
    if to_status not in ALLOWED[record.status]:
        raise InvalidStatusTransition(
            details={"billing_id": record.billing_id, "from": record.status, "to": to_status}
        )
    now = period_lock.stamp(record.organization_id)
    BillingEvent.objects.create(
        record=record,
        from_status=record.status,
        to_status=to_status,
        billing_method=billing_method or record.billing_method,
        amount=record.total_amount if amount is None else amount,
        actor=actor,
        reason=reason[:500],
        created_at=now,
    )
    from_status, from_method = record.status, record.billing_method
    record.status = to_status
    record.billing_method = billing_method or record.billing_method
    record.updated_at = now
    record.save(update_fields=["status", "billing_method", "updated_at"])
    _follow_in_rollup(record, from_status, from_method)
    return record


def _follow_in_rollup(record: BillingRecord, from_status: str, from_method: str) -> None:
    """The daily rollup counts usage under the method that pays it (and Stripe's meters
    are sent its ``payment_charge`` cost): a record paid another way moves there, and a
    charge voided before it was paid leaves it."""
    organization = record.organization
    voided = (
        record.status == S.REFUNDED
        and from_method == BillingMethod.PAYMENT_CHARGE
        and from_status != S.COMPLETED
    )
    if voided or record.billing_method != from_method:
        bump_daily_usage(organization, [record], sign=-1, billing_method=from_method)
    if not voided and record.billing_method != from_method:
        bump_daily_usage(organization, [record])


def statuses_that_may_become(to_status: str) -> list[str]:
    return [status for status, allowed in ALLOWED.items() if to_status in allowed]


def transition_many(
    records: list[BillingRecord], *, to_status: str, actor: str, reason: str
) -> int:
    """``transition`` for many locked records at once (same method, no rollup move): one
    billing event each, one update. Raises InvalidStatusTransition if any may not move."""
    for record in records:
        if to_status not in ALLOWED[record.status]:
            raise InvalidStatusTransition(
                details={"billing_id": record.billing_id, "from": record.status, "to": to_status}
            )
    if not records:
        return 0
    now = period_lock.stamp(records[0].organization_id)
    BillingEvent.objects.bulk_create(
        BillingEvent(
            record_id=record.pk, from_status=record.status, to_status=to_status,
            billing_method=record.billing_method, amount=record.total_amount, actor=actor,
            reason=reason[:500], created_at=now,
        )
        for record in records
    )  # fmt: skip
    BillingRecord.objects.filter(pk__in=[record.pk for record in records]).update(
        status=to_status, updated_at=now
    )
    return len(records)


@transaction.atomic
def process_billing(
    *,
    organization: Organization | None,
    billing_id: str,
    billing_method: str,
    force_charge: bool = False,
    actor: str,
) -> BillingRecord:
    """Settles a pending (or failed) record with ``billing_method`` (seed 003's
    billing/process): from the wallet or credits at once, or queued as a charge on the
    period's invoice (``force_charge``: charge now, once Stripe is connected). Asking again
    for what is already done returns the record unchanged."""
    record = locked_record(organization=organization, billing_id=billing_id)
    settled = (
        {S.COMPLETED, S.PROCESSING}
        if billing_method == BillingMethod.PAYMENT_CHARGE
        else {S.COMPLETED}
    )
    if record.billing_method == billing_method and record.status in settled:
        return record  # already done
    if record.status not in (S.PENDING, S.FAILED):
        raise InvalidStatusTransition(
            details={"billing_id": billing_id, "from": record.status, "to": "processed"}
        )
    amount = record.total_amount
    details = {"billing_id": billing_id, "amount": str(amount)}
    if billing_method == BillingMethod.WALLET_DEDUCTION:
        funds = Funds.lock(record.organization, at=timezone.now())
        if not funds.take_wallet(amount, reference=billing_id, actor=actor):
            raise InsufficientWalletBalance(
                details={**details, "balance": str(funds.wallet_balance)}
            )
        funds.write()
        return transition(
            record=record, to_status=S.COMPLETED, actor=actor, reason="paid from the wallet",
            billing_method=billing_method,
        )  # fmt: skip
    if billing_method == BillingMethod.CREDIT_CONSUMPTION:
        funds = Funds.lock(record.organization, at=timezone.now())
        if not funds.take_credits(amount, reference=billing_id, actor=actor):
            raise InsufficientCredits(details={**details, "credits": str(funds.credit_balance)})
        funds.write()
        return transition(
            record=record, to_status=S.COMPLETED, actor=actor, reason="paid with credits",
            billing_method=billing_method,
        )  # fmt: skip
    if billing_method == BillingMethod.SUBSCRIPTION_INCLUDED:
        if amount != 0:
            raise NotIncludedInSubscription(details=details)
        return transition(
            record=record, to_status=S.COMPLETED, actor=actor, reason="included",
            billing_method=billing_method,
        )  # fmt: skip
    reason = "charge requested now" if force_charge else "queued for the period's invoice"
    return transition(
        record=record, to_status=S.PROCESSING, actor=actor, reason=reason,
        billing_method=BillingMethod.PAYMENT_CHARGE,
    )  # fmt: skip


@transaction.atomic
def refund_billing(
    *, organization: Organization | None, billing_id: str, actor: str, reason: str
) -> BillingRecord:
    """Refunds a record in full with new ledger entries, never by editing old ones: a
    wallet payment goes back to the wallet, credits back to their grants, a charge not yet
    invoiced is voided, an invoiced one becomes account credit in the wallet. Refunding a
    refunded record changes nothing."""
    record = locked_record(organization=organization, billing_id=billing_id)
    if record.status == S.REFUNDED:
        return record
    method, amount = record.billing_method, record.total_amount
    paid = record.status == S.COMPLETED
    if amount > 0 and method == BillingMethod.WALLET_DEDUCTION and paid:
        wallets.refund_to_wallet(
            organization=record.organization, amount=amount, reference=billing_id, actor=actor,
            reason=reason,
        )  # fmt: skip
    elif amount > 0 and method == BillingMethod.CREDIT_CONSUMPTION and paid:
        consumed: dict[int, Decimal] = {}
        for entry in CreditEntry.objects.filter(
            reference=billing_id, kind=CreditEntry.Kind.CONSUMPTION
        ):
            consumed[entry.grant_id] = consumed.get(entry.grant_id, Decimal(0)) - entry.amount
        wallets.refund_credits(allocations=consumed, reference=billing_id, actor=actor)
    elif amount > 0 and method == BillingMethod.PAYMENT_CHARGE and paid:
        wallets.refund_to_wallet(
            organization=record.organization, amount=amount, reference=billing_id, actor=actor,
            reason=f"credit note: {reason}",
        )  # fmt: skip
    return transition(record=record, to_status=S.REFUNDED, actor=actor, reason=reason)
