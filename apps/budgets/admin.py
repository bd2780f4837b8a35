from django.contrib import admin

from apps.budgets.models import Alert, AlertDelivery, Budget, BudgetPeriod, NotificationChannel
from billing_portal.admin_actions import ReadOnlyAdmin


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
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "scope", "period", "limit", "currency", "is_hard",
                    "is_active"]  # fmt: skip
    list_filter = ["scope", "period", "is_hard", "is_active"]
    list_select_related = ["organization"]
    search_fields = ["name", "organization__name", "organization__slug"]
    autocomplete_fields = ["organization", "product", "service_type", "api_key"]
    date_hierarchy = "created_at"
    inlines = [BudgetPeriodInline]


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(ReadOnlyAdmin):
    list_display = ["budget", "starts_at", "ends_at", "spent"]
    list_select_related = ["budget__organization"]
    search_fields = ["budget__name", "budget__organization__slug"]
    date_hierarchy = "starts_at"


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
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["period", "threshold", "spent", "limit", "created_at"]
    list_filter = ["threshold"]
    list_select_related = ["period__budget__organization"]
    search_fields = ["period__budget__name", "period__budget__organization__slug"]
    date_hierarchy = "created_at"
    inlines = [AlertDeliveryInline]
