"""The finance month-end report: revenue by plan and by service type, credits and wallet
consumed, postpaid amounts outstanding, refunds and the differences found, for one
calendar month; in the admin and as CSV or XLSX."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, F, Sum
from django.http import HttpResponse
from django.utils import timezone

from apps.core.csv_stream import safe_cell
from apps.pricing.models import BillingMethod
from apps.usage.books import check_books
from apps.usage.models import BillingRecord, BillingStatus, DailyUsage, Statement

ZERO = Decimal(0)
COLUMNS = ["section", "item", "currency", "amount", "count"]


def parse_month(text: str | None) -> date:
    """``2026-10`` → the first of that month; anything else → last month."""
    try:
        year, month = (int(part) for part in (text or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        first = timezone.now().date().replace(day=1)  # (UTC, whatever the machine's zone)
        return (first - timedelta(days=1)).replace(day=1)


def _next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def report(month: date, *, books: bool = False) -> dict:
    end = _next_month(month)
    # Statements whose period starts in the month in their organisation's time zone
    # (a UTC date would put Berlin's October under September).
    nearby = Statement.objects.filter(
        status=Statement.Status.FINAL,
        period_start__date__gte=month - timedelta(days=1),
        period_start__date__lt=end + timedelta(days=1),
    ).select_related("organization")
    ids = [
        s.pk for s in nearby
        if month <= s.period_start.astimezone(s.organization.tz).date() < end
    ]  # fmt: skip
    statements = Statement.objects.filter(pk__in=ids)
    rows = []
    for row in (
        statements.values(item=F("plan__name"), cur=F("currency"))
        .annotate(amount=Sum("total_due"), count=Count("pk"))
        .order_by("item", "cur")
    ):
        rows.append(["Revenue by plan (statements' total due)", row["item"] or "No plan",
                     row["cur"], row["amount"], row["count"]])  # fmt: skip
    for row in (
        DailyUsage.objects.filter(day__gte=month, day__lt=end)
        .values(item=F("service_type"), cur=F("organization__currency"))
        .annotate(amount=Sum("cost"), count=Sum("event_count"))
        .order_by("item", "cur")
    ):
        rows.append(["Usage revenue by service type", row["item"], row["cur"], row["amount"],
                     row["count"]])  # fmt: skip
    totals = (
        ("Credits consumed", "credits_applied"), ("Wallet consumed", "wallet_paid"),
        ("Refunds", "refunds"),
        ("Adjustments (late usage, credit notes, volume discounts)", "adjustments"),
        ("Minimum charge true-ups", "minimums"), ("Base fees", "base_fee"),
    )  # fmt: skip
    for label, field in totals:
        for row in statements.values(cur=F("currency")).annotate(amount=Sum(field)).order_by("cur"):
            rows.append([label, "", row["cur"], row["amount"], ""])
    for row in (
        BillingRecord.objects.filter(
            billing_method=BillingMethod.PAYMENT_CHARGE,
            status__in=[BillingStatus.PENDING, BillingStatus.PROCESSING, BillingStatus.FAILED],
        )
        .values(item=F("status"), cur=F("currency"))
        .annotate(amount=Sum("total_amount"), count=Count("pk"))
        .order_by("item", "cur")
    ):
        rows.append(["Postpaid outstanding (all periods)", row["item"], row["cur"],
                     row["amount"], row["count"]])  # fmt: skip
    stopped = Statement.objects.filter(status=Statement.Status.MISMATCH)
    for statement in stopped.select_related("organization"):
        rows.append(["Differences found", f"close stopped: {statement.organization.slug} "
                     f"{statement.period_start:%Y-%m-%d}", statement.currency, "", ""])  # fmt: skip
    if books:  # the full invariant check, on demand (it reads every ledger)
        for difference in check_books():
            rows.append(["Differences found", str(difference), "", "", ""])
    return {"rows": rows, "statements": statements.count()}


def download(report_data: dict, month: date, fmt: str) -> HttpResponse:
    name = f"month-end-{month:%Y-%m}.{fmt}"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        writer.writerows([safe_cell(value) for value in row] for row in report_data["rows"])
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    else:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = f"{month:%Y-%m}"
        sheet.append(COLUMNS)
        for row in report_data["rows"]:
            sheet.append(list(row))
        for cell in sheet["D"][1:]:
            cell.number_format = "#,##0.00"
        stream = io.BytesIO()
        book.save(stream)
        response = HttpResponse(
            stream.getvalue(),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
