from django import forms
from django.contrib import admin

from apps.core.admin_actions import (
    AuditedAdmin,
    EstimatedCountPaginator,
    ReadOnlyAdmin,
    ReasonForm,
    confirm_and_apply,
    export_as_csv,
)
from apps.customers.models import Organization
from apps.pricing.models import ServiceType
from apps.usage import services
from apps.usage.models import (
    BillingEvent,
    BillingRecord,
    DailyUsage,
    Meter,
    Statement,
    StatementLine,
    StripeUsageReport,
    UsageCounter,
    UsageEvent,
)


class ServiceTypeFilter(admin.SimpleListFilter):
    """Service types from the catalog: listing the distinct values of a million-row table
    would scan it on every page view."""

    title = "service type"
    parameter_name = "service_type"

    def lookups(self, request, model_admin):
        return list(ServiceType.objects.order_by("name").values_list("code", "name"))

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(service_type=self.value())
        return queryset


class CurrencyFilter(admin.SimpleListFilter):
    """The currencies organisations pay in (not a DISTINCT over the records)."""

    title = "currency"
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        codes = Organization.objects.values_list("currency", flat=True).distinct()
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    """A million rows and more: counted up to 10,000 then estimated, dates drilled down
    from the rollup, searched by exact event key through the (organisation, key) index."""

    actions = [export_as_csv]
    list_display = ["idempotency_key", "organization", "product", "user_id", "quantity",
                    "occurred_at", "received_at"]  # fmt: skip
    list_filter = [ServiceTypeFilter, "organization"]
    list_select_related = ["organization", "product"]
    search_fields = ["idempotency_key"]
    search_help_text = "The exact event key (idempotency key)."
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # Keys are unique per organisation: one index probe per organisation.
        organizations = Organization.objects.values("pk")
        return queryset.filter(organization_id__in=organizations, idempotency_key=term), False


class BillingEventInline(admin.TabularInline):
    model = BillingEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "from_status", "to_status", "billing_method", "amount", "actor",
              "reason"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(BillingRecord)
class BillingRecordAdmin(ReadOnlyAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_display = [
        "billing_id", "organization", "user_id", "product", "usage_amount", "total_amount",
        "currency", "billing_method", "status", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "billing_method", ServiceTypeFilter, CurrencyFilter]
    list_select_related = ["organization", "product"]
    search_fields = ["=billing_id", "=user_id", "=organization__slug"]
    date_hierarchy = "occurred_at"
    inlines = [BillingEventInline]
    actions = [export_as_csv, "refund"]

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm("usage.refund_billingrecord")

    @admin.action(description="Refund the selected billing records", permissions=["refund"])
    def refund(self, request, queryset):
        return confirm_and_apply(
            self,
            request,
            queryset,
            form_class=ReasonForm,
            title="Refund billing records",
            apply=lambda record, data, actor: services.refund_billing(
                organization=None, billing_id=record.billing_id, actor=actor, reason=data["reason"]
            ),
        )


@admin.register(BillingEvent)
class BillingEventAdmin(ReadOnlyAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = [export_as_csv]
    list_display = ["record", "from_status", "to_status", "billing_method", "amount", "actor",
                    "reason", "created_at"]  # fmt: skip
    list_filter = ["to_status", "billing_method"]
    list_select_related = ["record"]
    search_fields = ["=record__billing_id", "actor"]
    date_hierarchy = "created_at"


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = [export_as_csv]
    list_display = ["day", "organization", "product", "user_id", "billing_method", "quantity",
                    "cost", "event_count"]  # fmt: skip
    list_filter = [ServiceTypeFilter, "billing_method"]
    list_select_related = ["organization", "product"]
    search_fields = ["=organization__slug", "=user_id"]
    date_hierarchy = "day"


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["organization", "key", "period_start", "period_end", "quantity"]
    list_select_related = ["organization"]
    search_fields = ["=organization__slug", "key"]
    date_hierarchy = "period_start"


@admin.register(StripeUsageReport)
class StripeUsageReportAdmin(ReadOnlyAdmin):
    """What was sent to Stripe's meters, one row per meter event (append-only)."""

    actions = [export_as_csv]
    list_display = ["identifier", "organization", "product", "day", "segment_start", "value",
                    "reported_at"]  # fmt: skip
    list_filter = ["event_name"]
    list_select_related = ["organization", "product"]
    search_fields = ["=identifier", "=stripe_customer_id", "=organization__slug"]
    date_hierarchy = "day"


class StatementLineInline(admin.TabularInline):
    model = StatementLine
    extra = 0
    can_delete = False
    fields = ["position", "kind", "description", "quantity", "included_quantity",
              "billable_quantity", "unit_price", "amount_unrounded", "amount"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    """Statements are built by the close and never edited; one that stopped on a mismatch
    is re-run once its records or rollup are put right."""

    list_display = ["organization", "period_start", "period_end", "status", "usage_total",
                    "total_due", "currency", "push_method", "finalized_at"]  # fmt: skip
    list_filter = ["status", "currency", "push_method"]
    list_select_related = ["organization"]
    search_fields = ["=organization__slug", "organization__name"]
    date_hierarchy = "period_start"
    inlines = [StatementLineInline]
    actions = [export_as_csv, "rerun"]

    def has_rerun_permission(self, request) -> bool:
        return request.user.has_perm("usage.change_statement")

    @admin.action(description="Re-run the close of the selected stopped statements",
                  permissions=["rerun"])  # fmt: skip
    def rerun(self, request, queryset):
        from apps.usage import statements

        def apply(statement, data, actor):
            if statement.status != Statement.Status.MISMATCH:
                raise statements.PeriodAlreadyClosed()
            result = statements.rerun(statement)
            self.message_user(request, f"{statement}: {result.get_status_display()}")

        return confirm_and_apply(
            self, request, queryset.select_related("organization"), form_class=ReasonForm,
            title="Re-run the close", apply=apply,
        )  # fmt: skip

    def get_urls(self):
        from django.urls import path

        return [
            path(
                "month-end/",
                self.admin_site.admin_view(self.month_end_view),
                name="usage_statement_month_end",
            ),  # fmt: skip
            *super().get_urls(),
        ]

    def month_end_view(self, request):
        from django.template.response import TemplateResponse

        from apps.usage import month_end

        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        month = month_end.parse_month(request.GET.get("month"))
        report = month_end.report(month, books=request.GET.get("books") == "1")
        fmt = request.GET.get("format")
        if fmt in ("csv", "xlsx"):
            return month_end.download(report, month, fmt)
        context = {**self.admin_site.each_context(request), "title": f"Month-end {month:%B %Y}",
                   "report": report, "month": month, "opts": self.model._meta}  # fmt: skip
        return TemplateResponse(request, "admin/usage/month_end.html", context)


class MeterForm(forms.ModelForm):
    class Meta:
        model = Meter
        fields = [
            "slug", "name", "description", "event_type", "product", "aggregation",
            "value_properties", "group_by", "is_active",
        ]  # fmt: skip

    def clean_value_properties(self):
        return self.cleaned_data["value_properties"] or {}

    def clean_group_by(self):
        return self.cleaned_data["group_by"] or {}


@admin.register(Meter)
class MeterAdmin(AuditedAdmin):
    """Meters read CloudEvents (``POST /api/v1/events``) into a product's usage; a meter is
    retired (inactive), not deleted, so what it metered stays readable."""

    form = MeterForm
    list_display = ["slug", "name", "event_type", "product", "aggregation", "values_read",
                    "groups", "is_active", "updated_at"]  # fmt: skip
    list_filter = ["aggregation", "is_active"]
    list_select_related = ["product"]
    search_fields = ["slug", "name", "event_type"]
    autocomplete_fields = ["product"]
    readonly_fields = ["created_at", "updated_at"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="values")
    def values_read(self, meter: Meter) -> str:
        if meter.aggregation == Meter.Aggregation.COUNT:
            return "count"
        return ", ".join(f"{name} ← {path}" for name, path in meter.value_properties.items())

    @admin.display(description="group by")
    def groups(self, meter: Meter) -> str:
        return ", ".join(meter.group_by)
