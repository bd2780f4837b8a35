"""The books that must balance: invariants checked nightly and on demand
(``manage.py check_books``), each difference reported with what was expected and found.

- every wallet's balance is the sum of its ledger, and its last entry's balance after;
- every credit grant's remaining amount is the sum of its entries;
- every usage event has its billing record (and every record its event: a foreign key);
- per organisation, the billing records of its closed periods are on its statements:
  the usage lines of each final statement, the adjustment lines of later ones, or late
  usage still waiting for the next statement;
- Stripe's meters have every postpaid unit of days before yesterday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from apps.customers.models import CreditEntry, CreditGrant, Wallet, WalletEntry
from apps.pricing.models import BillingMethod
from apps.usage.models import (
    BillingEvent,
    BillingRecord,
    BillingStatus,
    DailyUsage,
    Statement,
    StatementLine,
    StripeUsageReport,
    UsageEvent,
)
from apps.usage.statements import counted
from apps.usage.sums import exact_sum, exact_sums

ZERO = Decimal(0)


@dataclass(frozen=True)
class Difference:
    check: str
    subject: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: expected {self.expected}, found {self.found}"


def check_books(*, now=None) -> list[Difference]:
    now = now or timezone.now()
    return [
        *wallets(),
        *credit_grants(),
        *events_without_records(),
        *statements_cover_records(),
        *meters(now),
        *stripe_invoices(),
    ]


def wallets() -> list[Difference]:
    last = WalletEntry.objects.filter(wallet=OuterRef("pk")).order_by("-created_at", "-id")
    ledgers = exact_sums(WalletEntry.objects.all(), "wallet_id", "amount")
    rows = Wallet.objects.annotate(after=Subquery(last.values("balance_after")[:1])).select_related(
        "organization"
    )
    found = []
    for wallet in rows:
        ledger = ledgers.get(wallet.pk, ZERO)
        if wallet.balance != ledger:
            found.append(Difference("wallet ledger", wallet.organization.slug, str(ledger),
                                    str(wallet.balance)))  # fmt: skip
        if wallet.after is not None and wallet.after != wallet.balance:
            found.append(Difference("wallet balance after", wallet.organization.slug,
                                    str(wallet.balance), str(wallet.after)))  # fmt: skip
    return found


def credit_grants() -> list[Difference]:
    ledgers = exact_sums(CreditEntry.objects.all(), "grant_id", "amount")
    return [
        Difference(
            "credit ledger",
            f"grant {grant.pk} of {grant.organization_id}",
            str(ledgers.get(grant.pk, ZERO)),
            str(grant.remaining),
        )  # fmt: skip
        for grant in CreditGrant.objects.all().iterator(2000)
        if grant.remaining != ledgers.get(grant.pk, ZERO)
    ]


def events_without_records() -> list[Difference]:
    orphans = UsageEvent.objects.filter(
        ~Exists(BillingRecord.objects.filter(event=OuterRef("pk")))
    ).values_list("organization__slug", "idempotency_key")[:100]
    return [
        Difference("usage event without billing record", f"{slug}/{key}", "a record", "none")
        for slug, key in orphans
    ]


def statements_cover_records() -> list[Difference]:
    found = []
    final = Statement.objects.filter(status=Statement.Status.FINAL)
    for organization_id in final.values_list("organization_id", flat=True).distinct():
        closed = final.filter(organization_id=organization_id)
        in_closed = Q()
        for start, end in closed.values_list("period_start", "period_end"):
            in_closed |= Q(occurred_at__gte=start, occurred_at__lt=end)
        # What each closed statement counted when it froze: a charge voided later stays
        # on it (and a credit note on a later statement gives it back).
        freeze = closed.filter(
            period_start__lte=OuterRef("occurred_at"), period_end__gt=OuterRef("occurred_at")
        ).values("frozen_at")[:1]
        voided_before_freeze = (
            Q(status=BillingStatus.REFUNDED, billing_method=BillingMethod.PAYMENT_CHARGE)
            & ~Exists(BillingEvent.objects.filter(record=OuterRef("pk"),
                                                  to_status=BillingStatus.COMPLETED))
            & Exists(BillingEvent.objects.filter(record=OuterRef("pk"),
                                                 to_status=BillingStatus.REFUNDED,
                                                 created_at__lte=OuterRef("freeze")))
        )  # fmt: skip
        records = (
            BillingRecord.objects.filter(in_closed, organization_id=organization_id)
            .annotate(freeze=Subquery(freeze))
            .exclude(voided_before_freeze)
        )
        recorded = exact_sum(records, "total_amount")
        lines = StatementLine.objects.filter(statement__organization_id=organization_id)
        on_statements = exact_sum(
            lines.filter(kind=StatementLine.Kind.USAGE, statement__status=Statement.Status.FINAL),
            "amount_unrounded",
        ) + exact_sum(
            lines.filter(kind=StatementLine.Kind.ADJUSTMENT, product__isnull=False,
                         statement__status=Statement.Status.FINAL),
            "amount_unrounded",
        )  # fmt: skip
        newest = closed.order_by("-frozen_at").values_list("frozen_at", flat=True).first()
        # Late usage that the next statement will carry.
        waiting = exact_sum(records.filter(created_at__gt=newest), "total_amount")
        if recorded != on_statements + waiting:
            found.append(Difference("statements cover records", f"organisation {organization_id}",
                                    str(recorded), str(on_statements + waiting)))  # fmt: skip
    return found


def meters(now) -> list[Difference]:
    """Days before yesterday whose postpaid cost Stripe's meters have not all received
    (only organisations whose usage is reported there)."""
    from apps.usage.stripe_usage import meter_units

    reported = {
        (row["organization_id"], row["product_id"], row["day"]): row["units"]
        for row in StripeUsageReport.objects.values("organization_id", "product_id", "day")
        .annotate(units=Sum("value"))
        .order_by()
    }
    if not reported:
        return []
    organizations = {key[0] for key in reported}
    before = (now - timedelta(days=1)).date()
    found = []
    for row in (
        DailyUsage.objects.filter(
            organization_id__in=organizations,
            billing_method=BillingMethod.PAYMENT_CHARGE,
            day__lt=before,
            day__gte=min(key[2] for key in reported),
            product__stripe_meter_event_name__gt="",
        )
        .values("organization_id", "product_id", "day")
        .annotate(cost=Sum("cost"))
        .order_by()
    ):
        key = (row["organization_id"], row["product_id"], row["day"])
        owed = meter_units(row["cost"])
        if reported.get(key, 0) < owed:
            found.append(Difference("meters", f"{key[0]}/{key[1]}/{key[2]}", str(owed),
                                    str(reported.get(key, 0))))  # fmt: skip
    return found


def stripe_invoices() -> list[Difference]:
    """Per Stripe invoice, each metered line against the postpaid charges of its period
    for that product, in minor units (a cent of tolerance per line: Stripe rounds each
    meter's total, the portal rounds each product's)."""
    from djstripe import models as djstripe

    from apps.pricing.cost_engine import to_minor_units
    from apps.pricing.models import Product

    products = {p.stripe_product_id: p for p in Product.objects.exclude(stripe_product_id="")}
    found = []
    invoices = djstripe.Invoice.objects.filter(customer__subscriber__isnull=False).select_related(
        "customer"
    )
    for invoice in invoices.iterator(500):
        data = invoice.stripe_data or {}
        lines = ((data.get("lines") or {}).get("data")) or []
        start, end = data.get("period_start"), data.get("period_end")
        if not lines or not start or not end or data.get("status") not in ("open", "paid"):
            continue
        period = (datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
        for line in lines:
            details = (line.get("pricing") or {}).get("price_details") or {}
            product = products.get(details.get("product"))
            if product is None:
                continue
            charges = counted(BillingRecord.objects.filter(
                organization_id=invoice.customer.subscriber_id, product=product,
                billing_method=BillingMethod.PAYMENT_CHARGE,
                occurred_at__gte=period[0], occurred_at__lt=period[1],
            ))  # fmt: skip
            ours = to_minor_units(exact_sum(charges, "total_amount"), data["currency"].upper())
            if abs(ours - int(line["amount"])) > 1:
                found.append(Difference("stripe invoice", f"{invoice.id}/{product.code}",
                                        str(ours), str(line["amount"])))  # fmt: skip
    return found
