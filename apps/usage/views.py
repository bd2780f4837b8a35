"""Customer pages of the usage app: usage over a range, by day, split by service type or
product, by end user, and its CSV export. Everything reads the daily rollup."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from apps.core import charts
from apps.core.csv_stream import streaming_csv
from apps.customers.access import member_view
from apps.customers.templatetags.billing import money, quantity
from apps.customers.views import page
from apps.pricing.cost_engine import format_quantity
from apps.pricing.models import Product, ServiceType
from apps.pricing.periods import local_day
from apps.usage import selectors

ZERO = Decimal(0)
MAX_DAYS = 366
MAX_SERIES = 6  # the largest series; the rest are drawn as "Other"


class RangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    split = forms.ChoiceField(
        choices=[("service_type", "Service type"), ("product", "Product")],
        required=False, label="Split by",
    )  # fmt: skip
    metric = forms.ChoiceField(
        choices=[("cost", "Cost"), ("quantity", "Quantity"), ("events", "Events")],
        required=False, label="Show",
    )  # fmt: skip
    product = forms.ChoiceField(required=False, label="Product")

    def __init__(self, *args, today: date, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today
        self.fields["product"].choices = [("", "All products")] + list(
            Product.objects.order_by("name").values_list("code", "name")
        )

    def clean(self):
        data = super().clean()
        end = data.get("end") or self.today
        start = data.get("start") or end - timedelta(days=29)
        if start > end:
            raise forms.ValidationError("The start is after the end.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"At most {MAX_DAYS} days at a time.")
        data.update(
            start=start,
            end=end,
            split=data.get("split") or "service_type",
            metric=data.get("metric") or "cost",
        )
        return data


def _range(request: HttpRequest):
    today = local_day(timezone.now(), request.organization.tz)
    form = RangeForm(request.GET or None, today=today)
    if request.GET and not form.is_valid():
        return form, None
    if not request.GET:
        form = RangeForm({}, today=today)
        form.is_valid()
    data = form.cleaned_data
    # Shown as chosen, with the defaults filled in.
    shown = RangeForm(
        {**{k: v for k, v in data.items() if v}, "start": data["start"], "end": data["end"]},
        today=today,
    )
    shown.is_valid()
    return shown, data


def _filters(request: HttpRequest, data: dict) -> dict:
    return {
        "organization": request.organization,
        "start": data["start"],
        "end": data["end"],
        "product_code": data.get("product") or None,
    }


@member_view()
def usage(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form, data = _range(request)
    if data is None:
        return page(request, "billing/usage.html", {"form": form}, status=400)
    currency = organization.currency
    split = data["split"]
    metric = data["metric"]
    filters = _filters(request, data)
    rows = selectors.usage_aggregations(group_by=["day", split], **filters)
    key = split
    if split == "product":
        labels = dict(Product.objects.values_list("code", "name"))
    else:
        labels = dict(ServiceType.objects.values_list("code", "name"))

    days = [
        data["start"] + timedelta(days=i) for i in range((data["end"] - data["start"]).days + 1)
    ]
    position = {day: i for i, day in enumerate(days)}
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row[key]] = totals.get(row[key], ZERO) + Decimal(row[metric])
    ordered = sorted(totals, key=lambda name: (-totals[name], name))
    shown = ordered[:MAX_SERIES]
    names = [labels.get(name, name) for name in shown]
    if len(ordered) > MAX_SERIES:
        names.append("Other")
    palette = charts.colours(names)
    values = {name: [ZERO] * len(days) for name in names}
    for row in rows:
        name = labels.get(row[key], row[key]) if row[key] in shown else "Other"
        values[name][position[row["day"]]] += Decimal(row[metric])
    series = [charts.Series(name, values[name], palette[name]) for name in names]
    fmt = (lambda v: money(v, currency)) if metric == "cost" else quantity
    chart = charts.stacked_bars(
        days, series, fmt=fmt, label=f"Daily {metric} by {split.replace('_', ' ')}"
    )
    table = sorted(
        ({**row, "label": labels.get(row[key], row[key])} for row in rows),
        key=lambda row: (row["day"], -row["cost"]),
    )
    return page(
        request,
        "billing/usage.html",
        {
            "form": form,
            "range": data,
            "chart": chart,
            "legend": [(name, palette[name]) for name in names],
            "table": table,
            "total_cost": sum((row["cost"] for row in rows), ZERO),
            "total_events": sum(row["events"] for row in rows),
            "users": selectors.top_consumers(limit=20, **filters),
            "split_label": dict(RangeForm.base_fields["split"].choices)[split],
            "mixed_units": metric == "quantity" and not data.get("product"),
            "export_query": request.GET.urlencode(),
        },
    )


@member_view()
def usage_export(request: HttpRequest) -> HttpResponse:
    """The range as CSV, one row per day, product, end user and billing method, streamed
    from the rollup (a long range does not load into memory)."""
    form, data = _range(request)
    if data is None:
        return HttpResponse(
            "Invalid range: " + "; ".join(form.errors.get("__all__", ["check the dates"])),
            status=400,
            content_type="text/plain",
        )
    queryset = (
        selectors.daily_usage(**_filters(request, data))
        .select_related("product")
        .order_by("day", "service_type", "product__code", "user_id", "billing_method")
    )
    currency = request.organization.currency
    rows = (
        [item.day.isoformat(), item.service_type, item.product.code, item.user_id,
         item.billing_method, format_quantity(item.quantity), item.event_count,
         format_quantity(item.cost), currency]
        for item in queryset.iterator(chunk_size=2000)
    )  # fmt: skip
    header = ["day", "service_type", "product_id", "user_id", "billing_method", "quantity",
              "events", "cost", "currency"]  # fmt: skip
    name = f"usage-{request.organization.slug}-{data['start']}-{data['end']}.csv"
    return streaming_csv(header, rows, name)


# --- statements ---------------------------------------------------------------------------


def _final_statements(request: HttpRequest):
    from apps.usage.models import Statement

    return Statement.objects.filter(
        organization=request.organization, status=Statement.Status.FINAL
    ).select_related("plan")


@member_view()
def statements(request: HttpRequest) -> HttpResponse:
    return page(request, "billing/statements.html", {"statements": _final_statements(request)[:36]})


def _statement_context(request: HttpRequest, statement_id: int) -> dict:
    from django.shortcuts import get_object_or_404

    statement = get_object_or_404(_final_statements(request), pk=statement_id)
    tz = request.organization.tz
    return {
        "statement": statement,
        "lines": list(statement.lines.select_related("product")),
        "first_day": local_day(statement.period_start, tz),
        "last_day": local_day(statement.period_end - timedelta(microseconds=1), tz),
    }


@member_view()
def statement_detail(request: HttpRequest, statement_id: int) -> HttpResponse:
    return page(request, "billing/statement.html", _statement_context(request, statement_id))


@member_view()
def statement_pdf(request: HttpRequest, statement_id: int) -> HttpResponse:
    """The statement as a PDF, rendered on the server (WeasyPrint)."""
    from django.template.loader import render_to_string
    from weasyprint import HTML

    context = {**_statement_context(request, statement_id), "organization": request.organization}
    html = render_to_string("billing/statement_pdf.html", context, request=request)
    pdf = HTML(string=html, base_url=request.build_absolute_uri("/")).write_pdf()
    statement = context["statement"]
    response = HttpResponse(pdf, content_type="application/pdf")
    name = f"statement-{request.organization.slug}-{context['first_day']:%Y-%m}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Statement"] = str(statement.pk)
    return response
