"""The organisation's whole admin page: the customers app's own admin plus the panels of
the apps above it (its budgets this period, its recent billing records and alerts)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from apps.budgets import selectors as budget_selectors
from apps.budgets.models import Alert
from apps.customers.admin import OrganizationAdmin
from apps.customers.models import Organization
from apps.pricing.cost_engine import format_amount
from apps.usage.models import BillingRecord


class OrganizationPageAdmin(OrganizationAdmin):
    readonly_fields = [*OrganizationAdmin.readonly_fields, "budgets_panel", "records_panel",
                       "alerts_panel"]  # fmt: skip

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        at = next(i for i, (name, _) in enumerate(fieldsets) if name == "Wallet and credits")
        fieldsets.insert(at, ("Budgets", {"fields": ["budgets_panel"]}))
        fieldsets[at + 2 : at + 2] = [
            ("Recent billing records", {"fields": ["records_panel"]}),
            ("Recent alerts", {"fields": ["alerts_panel"]}),
        ]
        return fieldsets

    @admin.display(description="Budgets")
    def budgets_panel(self, obj: Organization) -> str:
        statuses = budget_selectors.budget_statuses(
            budget_selectors.budgets_of(obj).order_by("name"), at=timezone.now()
        )
        if not statuses:
            return "No budget."
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">{}</a> ({}, {}): {} of {} ({}%) this period{}',
            (
                (reverse("admin:budgets_budget_change", args=[s.budget.pk]), s.budget.name,
                 s.budget.get_period_display().lower(), "hard" if s.budget.is_hard else "soft",
                 format_amount(s.spent, obj.currency), format_amount(s.budget.limit, obj.currency),
                 s.utilization, "" if s.budget.is_active else " · paused")
                for s in statuses
            ),
        )  # fmt: skip

    @admin.display(description="Recent billing records")
    def records_panel(self, obj: Organization) -> str:
        records = BillingRecord.objects.filter(organization=obj).select_related("product")
        records = records.order_by("-created_at")[:10]
        if not records:
            return "None yet."
        more = (
            reverse("admin:usage_billingrecord_changelist") + f"?organization__id__exact={obj.pk}"
        )
        rows = format_html_join(
            mark_safe("<br>"),
            '<a href="{}">{}</a> {} · {} · {} {} · {} · {}',
            (
                (reverse("admin:usage_billingrecord_change", args=[r.pk]), r.billing_id,
                 r.created_at.strftime("%Y-%m-%d %H:%M"), r.product.code,
                 format_amount(r.total_amount, r.currency), r.currency, r.billing_method,
                 r.status)
                for r in records
            ),
        )  # fmt: skip
        return format_html('{}<br><a href="{}">All billing records</a>', rows, more)

    @admin.display(description="Recent alerts")
    def alerts_panel(self, obj: Organization) -> str:
        alerts = (
            Alert.objects.filter(period__budget__organization=obj)
            .select_related("period__budget")
            .order_by("-created_at")[:10]
        )
        if not alerts:
            return "None."
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">{}</a> {}: {}% ({} of {})',
            (
                (reverse("admin:budgets_alert_change", args=[a.pk]),
                 a.created_at.strftime("%Y-%m-%d %H:%M"), a.period.budget.name, a.threshold,
                 format_amount(a.spent, obj.currency), format_amount(a.limit, obj.currency))
                for a in alerts
            ),
        )  # fmt: skip


def install(site: admin.AdminSite) -> None:
    site.register(Organization, OrganizationPageAdmin)
