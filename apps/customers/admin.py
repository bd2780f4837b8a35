from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from djstripe import models as djstripe

from apps.core.admin_actions import (
    AuditedAdmin,
    ReadOnlyAdmin,
    ReasonForm,
    confirm_and_apply,
    export_as_csv,
)
from apps.customers import billing, key_stats, services, wallets
from apps.customers.models import (
    ApiKey,
    CreditEntry,
    CreditGrant,
    Membership,
    Organization,
    Wallet,
    WalletEntry,
)
from apps.pricing.cost_engine import format_amount


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class OrganizationAdmin(AuditedAdmin):
    """The organisation's own admin: its fields, members, keys, funds and Stripe. Registered
    by ``billing_portal.admin_panels`` with the panels of the other apps (budgets, records,
    alerts) that make it the organisation's whole page."""

    list_display = [
        "name",
        "slug",
        "plan",
        "subscription_status",
        "status",
        "billing_email",
        "currency",
        "created_at",
    ]
    list_display_links = ["name"]
    list_filter = ["status", "subscription_status", "plan", "currency"]
    list_select_related = ["plan"]
    search_fields = ["name", "slug", "billing_email"]
    date_hierarchy = "created_at"
    prepopulated_fields = {"slug": ["name"]}
    # Stripe decides these (``billing.follow_subscription``); the currency is the wallet's.
    readonly_fields = [
        "subscription_status", "past_due_since", "billing_anchor", "stripe", "created_at",
        "updated_at", "funds_panel",
    ]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["name", "slug", "billing_email", "currency", "time_zone", "status"]}),
        ("Plan and Stripe", {"fields": ["plan", "subscription_status", "past_due_since",
                                        "billing_anchor", "stripe"]}),
        ("Wallet and credits", {"fields": ["funds_panel"]}),
        ("Dates", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]  # fmt: skip
    inlines = [MembershipInline, ApiKeyInline]

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # adding: the organisation's own fields only
            return [(None, {"fields": ["name", "slug", "billing_email", "currency",
                                       "time_zone", "status", "plan"]})]  # fmt: skip
        return super().get_fieldsets(request, obj)

    @admin.display(description="Wallet and credits")
    def funds_panel(self, obj: Organization) -> str:
        now = timezone.now()
        grants = CreditGrant.objects.filter(organization=obj, remaining__gt=0).order_by(
            "expires_at"
        )[:10]
        wallet = Wallet.objects.filter(organization=obj).first()
        ledger = reverse("admin:customers_walletentry_changelist")
        ledger += f"?wallet__organization__id__exact={obj.pk}"
        lines = [
            format_html(
                'Prepaid balance {} {} · <a href="{}">ledger</a>{}',
                format_amount(wallets.wallet_balance(obj), obj.currency), obj.currency,
                ledger,
                format_html(' · <a href="{}">wallet</a>',
                            reverse("admin:customers_wallet_change", args=[wallet.pk]))
                if wallet else "",
            ),
            format_html("Unexpired credits {} {}", format_amount(
                wallets.credit_balance(obj, now), obj.currency), obj.currency),
        ]  # fmt: skip
        lines += [
            format_html(
                '<a href="{}">{}</a>: {} left of {}, expires {}',
                reverse("admin:customers_creditgrant_change", args=[g.pk]), g.reason,
                format_amount(g.remaining, g.currency), format_amount(g.amount, g.currency),
                g.expires_at.date() if g.expires_at else "never",
            )
            for g in grants
        ]  # fmt: skip
        return mark_safe("<br>".join(lines))

    @admin.display(description="Stripe")
    def stripe(self, obj: Organization) -> str:
        """Its Stripe customer, subscriptions and latest invoices: the mirrored row in this
        admin and the object in Stripe's dashboard."""
        if obj.pk is None:
            return "-"
        owner = "djstripe_owner_account"
        customers = list(djstripe.Customer.objects.filter(subscriber=obj).select_related(owner))
        subscriptions = (
            djstripe.Subscription.objects.filter(customer__in=customers)
            .select_related(owner)
            .order_by("-created")
        )
        invoices = (
            djstripe.Invoice.objects.filter(customer__in=customers)
            .select_related(owner)
            .order_by("-created")
        )
        rows = [
            (label, reverse(f"admin:djstripe_{kind}_change", args=[item.pk]), item,
             item.get_stripe_dashboard_url(), extra)
            for label, kind, items, extra_of in (
                ("Customer", "customer", customers, lambda c: c.email),
                ("Subscription", "subscription", subscriptions[:5], lambda s: s.status),
                ("Invoice", "invoice", invoices[:12],
                 lambda i: (i.stripe_data or {}).get("status", "")),
            )
            for item in items
            for extra in [extra_of(item)]
        ]  # fmt: skip
        if not rows:
            return "No Stripe customer yet."
        return format_html_join(
            mark_safe("<br>"),
            '{} <a href="{}">{}</a> ({}) · <a href="{}" target="_blank" rel="noopener">'
            "in Stripe</a>",
            (
                (label, url, item.id, extra, dashboard)
                for label, url, item, dashboard, extra in rows
            ),
        )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        # On an existing organisation the currency is its wallet's, and suspension goes
        # through the actions, which ask for a reason.
        return fields + ["currency", "status"] if obj is not None else fields

    actions = [export_as_csv, "suspend", "reactivate", "resync"]

    def has_suspend_permission(self, request) -> bool:
        return request.user.has_perm("customers.suspend_organization")

    def has_sync_permission(self, request) -> bool:
        return request.user.has_perm("customers.sync_organization")

    @admin.action(description="Suspend the selected organisations", permissions=["suspend"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Organization]):
        return self._set_status(request, queryset, Organization.Status.SUSPENDED, "Suspend")

    @admin.action(description="Reactivate the selected organisations", permissions=["suspend"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Organization]):
        return self._set_status(request, queryset, Organization.Status.ACTIVE, "Reactivate")

    def _set_status(self, request, queryset, status: str, verb: str):
        return confirm_and_apply(
            self, request, queryset, form_class=ReasonForm, title=f"{verb} organisations",
            apply=lambda organization, data, actor: services.set_organization_status(
                organization=organization, status=status
            ),
        )  # fmt: skip

    @admin.action(
        description="Re-sync the selected organisations from Stripe", permissions=["sync"]
    )
    def resync(self, request: HttpRequest, queryset: QuerySet[Organization]):
        def apply(organization, data, actor):
            change = billing.resync_organization(organization)
            self.message_user(
                request,
                f"{organization}: " + (f"fixed {change['before']} → {change['after']}"
                                       if change else "already in step with Stripe"),
            )  # fmt: skip

        return confirm_and_apply(
            self, request, queryset, form_class=ReasonForm, title="Re-sync from Stripe",
            apply=apply,
        )  # fmt: skip


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "organization"]
    search_fields = ["user__username", "user__email", "organization__name", "organization__slug"]
    autocomplete_fields = ["user", "organization"]


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Leave empty for the default scopes of the key's kind.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "kind", "organization", "scopes"]

    def clean(self):
        cleaned = super().clean()
        kind, organization = cleaned.get("kind"), cleaned.get("organization")
        if kind == ApiKey.Kind.SERVICE and organization is not None:
            self.add_error("organization", "A service key belongs to no organisation.")
        if kind == ApiKey.Kind.ORGANIZATION and organization is None:
            self.add_error("organization", "An organisation key needs its organisation.")
        return cleaned


class _KeyTrafficChangeList(ChangeList):
    """The page's keys with their request and error counts of the last 24 hours, read in
    one round trip (``apps.customers.key_stats``)."""

    def get_results(self, request):
        super().get_results(request)
        counts = key_stats.key_requests([key.pk for key in self.result_list])
        for key in self.result_list:
            key.traffic = counts.get(key.pk, (0, 0))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "prefix",
        "kind",
        "organization",
        "created_at",
        "last_used_at",
        "requests_24h",
        "error_rate_24h",
        "revoked_at",
    ]
    list_filter = ["kind", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["organization"]
    search_fields = ["name", "prefix", "organization__name", "organization__slug"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["organization"]
    actions = ["revoke"]

    def get_changelist(self, request, **kwargs):
        return _KeyTrafficChangeList

    def _traffic(self, obj: ApiKey) -> tuple[int, int]:
        traffic = getattr(obj, "traffic", None)
        if traffic is None:  # the change page: this key alone
            traffic = key_stats.key_requests([obj.pk]).get(obj.pk, (0, 0))
        return traffic

    @admin.display(description="Requests (24 h)")
    def requests_24h(self, obj: ApiKey) -> int:
        return self._traffic(obj)[0]

    @admin.display(description="Errors (24 h)")
    def error_rate_24h(self, obj: ApiKey) -> str:
        requests, errors = self._traffic(obj)
        if not requests:
            return "-"
        return f"{errors} ({Decimal(errors * 100) / Decimal(requests):.1f} %)"

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["name", "kind", "organization", "scopes"]
        return [
            "name",
            "prefix",
            "kind",
            "organization",
            "scopes",
            "created_by",
            "created_at",
            "last_used_at",
            "requests_24h",
            "error_rate_24h",
            "revoked_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        # A key's identity never changes; only its name may be corrected.
        return [
            "prefix",
            "kind",
            "organization",
            "scopes",
            "created_by",
            "created_at",
            "last_used_at",
            "requests_24h",
            "error_rate_24h",
            "revoked_at",
        ]

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = services.issue_api_key(
            name=obj.name,
            organization=obj.organization,
            service=obj.kind == ApiKey.Kind.SERVICE,
            scopes=form.cleaned_data.get("scopes") or None,
            created_by=request.user,
        )
        obj.pk = issued.api_key.pk
        obj._state.adding = False
        obj.refresh_from_db()
        messages.warning(
            request,
            f"Copy the new key now, it will not be shown again: {issued.raw_key}",
        )

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead, so usage stays attributable to the key

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.revoke_api_key(api_key=api_key)
            count += 1
        self.message_user(request, f"{count} key(s) revoked.")


# --- wallets and credits ----------------------------------------------------------------


class AmountForm(ReasonForm):
    amount = forms.DecimalField(max_digits=18, decimal_places=4, min_value=Decimal("0.0001"))
    reference = forms.CharField(
        required=False, max_length=255, help_text="A payment reference; written at most once."
    )
    field_order = ["amount", "reason", "reference"]


class GrantForm(ReasonForm):
    amount = forms.DecimalField(max_digits=18, decimal_places=4, min_value=Decimal("0.0001"))
    expires_at = forms.DateTimeField(required=False, help_text="Empty: never expires.")
    field_order = ["amount", "expires_at", "reason"]


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["organization", "balance", "currency", "overdraft_limit", "updated_at"]
    list_select_related = ["organization"]
    search_fields = ["organization__name", "organization__slug"]
    readonly_fields = ["organization", "currency", "balance", "updated_at"]
    actions = [export_as_csv, "top_up", "grant_credits"]

    def save_model(self, request, obj, form, change):
        # Only what the form edits: a full save would write back the balance as it was
        # read, over any payment committed meanwhile.
        obj.save(update_fields=["overdraft_limit", "updated_at"])

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_top_up_permission(self, request) -> bool:
        return request.user.has_perm("customers.top_up_wallet")

    def has_grant_permission(self, request) -> bool:
        return request.user.has_perm("customers.grant_credits")

    @admin.action(description="Top up the selected wallets", permissions=["top_up"])
    def top_up(self, request, queryset):
        return confirm_and_apply(
            self, request, queryset, form_class=AmountForm, title="Top up wallets",
            apply=lambda wallet, data, actor: wallets.top_up_wallet(
                organization=wallet.organization, amount=data["amount"], actor=actor,
                reason=data["reason"], reference=data["reference"],
            ),
        )  # fmt: skip

    @admin.action(
        description="Grant credits to the selected wallets' organisations", permissions=["grant"]
    )
    def grant_credits(self, request, queryset):
        return confirm_and_apply(
            self, request, queryset, form_class=GrantForm, title="Grant credits",
            apply=lambda wallet, data, actor: wallets.grant_credits(
                organization=wallet.organization, amount=data["amount"], reason=data["reason"],
                granted_by=actor, expires_at=data["expires_at"],
            ),
        )  # fmt: skip


@admin.register(WalletEntry)
class WalletEntryAdmin(ReadOnlyAdmin):
    actions = [export_as_csv]
    list_display = ["created_at", "wallet", "kind", "amount", "balance_after", "reference",
                    "actor", "reason"]  # fmt: skip
    list_filter = ["kind"]
    list_select_related = ["wallet__organization"]
    search_fields = ["=reference", "wallet__organization__slug", "actor"]
    date_hierarchy = "created_at"


class CreditEntryInline(admin.TabularInline):
    model = CreditEntry
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "amount", "reference", "actor"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CreditGrant)
class CreditGrantAdmin(AuditedAdmin, ReadOnlyAdmin):
    actions = [export_as_csv]
    list_display = ["organization", "amount", "remaining", "currency", "expires_at", "reason",
                    "granted_by", "created_at"]  # fmt: skip
    list_filter = ["currency"]
    list_select_related = ["organization"]
    search_fields = ["organization__slug", "reason", "=reference"]
    date_hierarchy = "created_at"
    inlines = [CreditEntryInline]


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    actions = [export_as_csv]
    list_display = ["created_at", "grant", "kind", "amount", "reference", "actor"]
    list_filter = ["kind"]
    list_select_related = ["grant__organization"]
    search_fields = ["=reference", "grant__organization__slug"]
    date_hierarchy = "created_at"
