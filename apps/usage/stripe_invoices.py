"""Stripe invoices settle the postpaid billing records of the period they bill.

A subscription's invoice bills its period's metered usage; when Stripe reports it paid,
the organisation's ``payment_charge`` records that occurred in that period become
``completed``; when a payment fails they become ``failed`` and the billing contact is told.
Both are set-based (a period may hold millions of records), write one billing event per
record moved, and are idempotent: a record already in the target status is left alone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from djstripe import models as djstripe

from apps.core import period_lock
from apps.customers import billing
from apps.pricing.models import BillingMethod
from apps.usage import services
from apps.usage.models import BillingRecord, BillingStatus

logger = logging.getLogger(__name__)

CHUNK = 5000


def settle(*, organization, start: datetime, end: datetime, to_status: str, reason: str) -> int:
    """Moves the period's open postpaid records to ``to_status``, a locked chunk at a time
    (memory stays flat however large the period); returns how many moved."""
    moved = 0
    while True:
        chunk = _settle_chunk(organization, start, end, to_status, reason)
        moved += chunk
        # Until a chunk finds nothing: a chunk may come back short while more remain
        # (rows another transaction moved are dropped once locked).
        if chunk == 0:
            return moved


def _settle_chunk(organization, start, end, to_status, reason) -> int:
    with transaction.atomic():
        period_lock.stamp(organization.pk)  # before the row locks, as ingestion takes it
        records = list(
            BillingRecord.objects.select_for_update()
            .filter(
                organization=organization,
                billing_method=BillingMethod.PAYMENT_CHARGE,
                occurred_at__gte=start,
                occurred_at__lt=end,
                status__in=services.statuses_that_may_become(to_status),
            )
            .only("pk", "organization_id", "billing_id", "status", "billing_method", "total_amount")
            .order_by("pk")[:CHUNK]
        )
        return services.transition_many(records, to_status=to_status, actor="stripe", reason=reason)


def on_invoice(sender, event, **kwargs) -> None:
    # dj-stripe's own handler (connected first: djstripe precedes our apps) has just
    # re-fetched the invoice from Stripe and stored it in this transaction.
    invoice = djstripe.Invoice.objects.get(id=event.data["object"]["id"]).stripe_data
    organization = billing.organization_for_customer(invoice.get("customer"))
    if organization is None:
        logger.warning("Stripe event %s: invoice of an unknown customer", event.id)
        return
    start = datetime.fromtimestamp(invoice["period_start"], UTC)
    end = datetime.fromtimestamp(invoice["period_end"], UTC)
    label = invoice.get("number") or invoice["id"]
    if invoice["status"] == "paid":
        settle(
            organization=organization, start=start, end=end,
            to_status=BillingStatus.COMPLETED, reason=f"Stripe invoice {label} paid",
        )  # fmt: skip
    elif event.type == "invoice.payment_failed":
        moved = settle(
            organization=organization, start=start, end=end,
            to_status=BillingStatus.FAILED, reason=f"Payment of Stripe invoice {label} failed",
        )  # fmt: skip
        logger.error("Payment of invoice %s of %s failed", label, organization.slug)
        transaction.on_commit(lambda: _tell(organization, invoice, label, moved))


def _tell(organization, invoice, label, moved) -> None:
    try:
        send_mail(
            subject=f"Payment failed for invoice {label}",
            message=(
                f"The payment of invoice {label} for {organization.name} failed; "
                f"{moved} usage charges of its period are unpaid. Update the card or pay it: "
                f"{invoice.get('hosted_invoice_url') or ''}"
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[organization.billing_email],
        )
    except Exception:
        logger.exception("Could not tell %s about the failed payment", organization.slug)
