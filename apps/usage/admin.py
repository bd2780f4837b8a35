from django.contrib import admin

from apps.usage import services
from apps.usage.models import BillingEvent, BillingRecord, DailyUsage, UsageCounter, UsageEvent
from billing_portal.admin_actions import ReadOnlyAdmin, ReasonForm, confirm_and_apply


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = ["idempotency_key", "organization", "product", "user_id", "quantity",
                    "occurred_at", "received_at"]  # fmt: skip
    list_filter = ["service_type"]
    list_select_related = ["organization", "product"]
    search_fields = ["=idempotency_key", "=user_id", "=organization__slug"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


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
    list_display = [
        "billing_id", "organization", "user_id", "product", "usage_amount", "total_amount",
        "currency", "billing_method", "status", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "billing_method", "service_type", "currency"]
    list_select_related = ["organization", "product"]
    search_fields = ["=billing_id", "=user_id", "=organization__slug"]
    date_hierarchy = "created_at"
    inlines = [BillingEventInline]
    actions = ["refund"]
    show_full_result_count = False

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
    list_display = ["record", "from_status", "to_status", "billing_method", "amount", "actor",
                    "reason", "created_at"]  # fmt: skip
    list_filter = ["to_status", "billing_method"]
    list_select_related = ["record"]
    search_fields = ["=record__billing_id", "actor"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdmin):
    list_display = ["day", "organization", "product", "user_id", "billing_method", "quantity",
                    "cost", "event_count"]  # fmt: skip
    list_filter = ["service_type", "billing_method"]
    list_select_related = ["organization", "product"]
    search_fields = ["=organization__slug", "=user_id"]
    date_hierarchy = "day"


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["organization", "key", "period_start", "period_end", "quantity"]
    list_select_related = ["organization"]
    search_fields = ["=organization__slug", "key"]
    date_hierarchy = "period_start"
