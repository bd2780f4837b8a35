from django.contrib import admin

from apps.budgets import services
from apps.budgets.models import Alert, AlertDelivery, Budget, BudgetPeriod, NotificationChannel
from apps.core.admin_actions import (
    AuditedAdmin,
    ReadOnlyAdmin,
    ReasonForm,
    confirm_and_apply,
    export_as_csv,
)


class PermissionActions:
    """``permissions=["x"]`` on an action asks the user for ``<app>.x_<model>``."""

    def _has(self, request, action: str) -> bool:
        meta = self.model._meta
        return request.user.has_perm(f"{meta.app_label}.{action}_{meta.model_name}")


class BudgetPeriodInline(admin.TabularInline):
    model = BudgetPeriod
    extra = 0
    can_delete = False
    fields = ["starts_at", "ends_at", "spent"]
    readonly_fields = fields
    ordering = ["-starts_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Budget)
class BudgetAdmin(AuditedAdmin):
    actions = [export_as_csv]
    list_display = ["name", "organization", "scope", "period", "limit", "currency", "is_hard",
                    "is_active"]  # fmt: skip
    list_filter = ["scope", "period", "is_hard", "is_active"]
    list_select_related = ["organization"]
    search_fields = ["name", "organization__name", "organization__slug"]
    autocomplete_fields = ["organization", "product", "service_type", "api_key"]
    date_hierarchy = "created_at"
    inlines = [BudgetPeriodInline]

    def save_model(self, request, obj, form, change):
        # A budget created part-way through its period counts what the period spent.
        services.save_budget(obj)


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(PermissionActions, ReadOnlyAdmin):
    list_display = ["budget", "organization", "starts_at", "ends_at", "spent", "limit"]
    list_select_related = ["budget__organization"]
    list_filter = ["budget__period", "budget__is_hard"]
    search_fields = ["budget__name", "budget__organization__slug"]
    date_hierarchy = "starts_at"
    actions = [export_as_csv, "reset"]

    @admin.display(ordering="budget__organization__name")
    def organization(self, obj):
        return obj.budget.organization

    @admin.display(description="Limit")
    def limit(self, obj):
        return obj.budget.limit

    def has_reset_permission(self, request) -> bool:
        return self._has(request, "reset")

    @admin.action(
        description="Reset the selected periods (spent back to zero)", permissions=["reset"]
    )
    def reset(self, request, queryset):
        return confirm_and_apply(
            self, request, queryset, form_class=ReasonForm, title="Reset budget periods",
            apply=lambda period, data, actor: services.reset_period(period=period),
        )  # fmt: skip


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["organization", "kind", "target", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    list_select_related = ["organization"]
    search_fields = ["organization__slug", "target"]
    autocomplete_fields = ["organization"]


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ["channel", "status", "attempts", "last_error", "sent_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(PermissionActions, ReadOnlyAdmin):
    list_display = ["period", "threshold", "spent", "limit", "created_at"]
    list_filter = ["threshold", "deliveries__status"]
    list_select_related = ["period__budget__organization"]
    search_fields = ["period__budget__name", "period__budget__organization__slug"]
    date_hierarchy = "created_at"
    inlines = [AlertDeliveryInline]
    actions = [export_as_csv, "resend"]

    def has_resend_permission(self, request) -> bool:
        return self._has(request, "resend")

    @admin.action(description="Resend the selected alerts", permissions=["resend"])
    def resend(self, request, queryset):
        return confirm_and_apply(
            self, request, queryset.select_related("period__budget__organization"),
            form_class=ReasonForm, title="Resend alerts",
            apply=lambda alert, data, actor: services.resend_alert(alert=alert),
        )  # fmt: skip


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["alert", "channel", "status", "attempts", "sent_at"]
    list_filter = ["status", "channel__kind"]
    list_select_related = ["alert__period__budget__organization", "channel"]
    search_fields = ["=channel__organization__slug", "channel__target"]
