from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV, XLSX

from apps.core.admin_actions import AuditedAdmin
from apps.pricing import services
from apps.pricing.forms import CostPreviewForm
from apps.pricing.models import IncludedQuota, Plan, PriceRule, PriceTier, Product, ServiceType
from apps.pricing.resources import PriceRuleResource


class CatalogAdmin(admin.ModelAdmin):
    """Any change here can change prices: every save starts a new cache generation (once
    the object and its inlines are saved)."""

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        services.invalidate_pricing_cache()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        services.invalidate_pricing_cache()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        services.invalidate_pricing_cache()


@admin.register(ServiceType)
class ServiceTypeAdmin(CatalogAdmin):
    list_display = ["code", "name", "is_builtin"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["code", "is_builtin"] if obj is not None and obj.is_builtin else ["is_builtin"]

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.is_builtin


class ProductForm(forms.ModelForm):
    dimensions = forms.CharField(
        help_text="Comma-separated, first one priced by a bare usage_amount: "
        "'units', or 'input_tokens, output_tokens'.",
    )

    class Meta:
        model = Product
        fields = [
            "code", "name", "service_type", "unit", "dimensions", "provider", "model_name",
            "description", "is_active",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(self.initial.get("dimensions"), list):
            self.initial["dimensions"] = ", ".join(self.initial["dimensions"])
        elif not self.initial.get("dimensions"):
            self.initial["dimensions"] = "units"

    def clean_dimensions(self):
        return [part.strip() for part in self.cleaned_data["dimensions"].split(",") if part.strip()]


@admin.register(Product)
class ProductAdmin(AuditedAdmin, CatalogAdmin):
    form = ProductForm
    list_display = [
        "code", "name", "service_type", "unit", "provider", "model_name", "dimension_list",
        "is_active",
    ]  # fmt: skip
    list_filter = ["service_type", "unit", "provider", "is_active"]
    search_fields = ["code", "name", "model_name", "provider"]
    list_select_related = ["service_type"]
    date_hierarchy = "created_at"

    @admin.display(description="dimensions")
    def dimension_list(self, product: Product) -> str:
        return ", ".join(product.dimensions)


class IncludedQuotaInline(admin.TabularInline):
    model = IncludedQuota
    extra = 0
    autocomplete_fields = ["product", "service_type"]


@admin.register(Plan)
class PlanAdmin(AuditedAdmin, CatalogAdmin):
    list_display = [
        "code", "name", "tier", "base_fee", "currency", "billing_interval", "trial_days",
        "is_public", "is_active", "is_default", "stripe_price_id",
    ]  # fmt: skip
    list_filter = ["tier", "currency", "billing_interval", "is_public", "is_active"]
    search_fields = ["code", "name", "stripe_price_id"]
    inlines = [IncludedQuotaInline]
    readonly_fields = ["created_at"]


class PriceTierFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        self.tier_specs = [
            services.TierSpec(
                up_to=form.cleaned_data.get("up_to"),
                unit_price=form.cleaned_data.get("unit_price"),
                flat_fee=form.cleaned_data.get("flat_fee"),
            )
            for form in sorted(
                (
                    form
                    for form in self.forms
                    if form.cleaned_data and not form.cleaned_data.get("DELETE")
                ),
                key=lambda f: (f.cleaned_data.get("up_to") is None, f.cleaned_data.get("up_to")),
            )
        ]
        rule = self.instance
        if rule.pricing_model in ("graduated", "volume") or self.tier_specs:
            services.validate_terms(
                pricing_model=rule.pricing_model,
                unit_price=rule.unit_price,
                tiers=self.tier_specs,
                package_size=rule.package_size,
                package_price=rule.package_price,
                free_allowance=rule.free_allowance,
                minimum_charge=rule.minimum_charge,
            )


class PriceTierInline(admin.TabularInline):
    model = PriceTier
    formset = PriceTierFormSet
    extra = 0
    fields = ["up_to", "unit_price", "flat_fee"]

    # Tiers change only on a scheduled version, and only for who may change prices.
    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or _is_scheduled(obj))

    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) and (obj is None or _is_scheduled(obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or _is_scheduled(obj))


def _is_scheduled(rule: PriceRule) -> bool:
    return rule.effective_from > timezone.now()


class PriceRuleForm(forms.ModelForm):
    class Meta:
        model = PriceRule
        fields = [
            "plan", "product", "dimension", "pricing_model", "unit_price", "package_size",
            "package_price", "free_allowance", "minimum_charge", "effective_from", "effective_to",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        product, dimension = cleaned.get("product"), cleaned.get("dimension")
        if product is not None and dimension and dimension not in product.dimensions:
            self.add_error("dimension", f"{product.code} has: {', '.join(product.dimensions)}.")
        start, end = cleaned.get("effective_from"), cleaned.get("effective_to")
        if start and end and end <= start:
            self.add_error("effective_to", "Must be after effective from.")
        if product is not None and dimension and start and not self.errors:
            clashing = services.versions_in_the_way(
                plan=cleaned.get("plan"),
                product=product,
                dimension=dimension,
                effective_from=start,
                effective_to=end,
                exclude_pk=self.instance.pk,
            )
            if clashing:
                raise ValidationError(
                    "Another version covers part of this time: %(versions)s. A price change "
                    "is an open-ended version starting after the one in force.",
                    params={"versions": "; ".join(str(rule) for rule in clashing)},
                )
        return cleaned


@admin.register(PriceRule)
class PriceRuleAdmin(AuditedAdmin, ImportExportModelAdmin):
    form = PriceRuleForm
    resource_classes = [PriceRuleResource]
    formats = [CSV, XLSX]
    list_display = [
        "product", "dimension", "scope", "pricing_model", "unit_price", "free_allowance",
        "effective_from", "effective_to", "status",
    ]  # fmt: skip
    list_filter = ["product__service_type", "plan", "pricing_model", "dimension"]
    list_select_related = ["product", "plan"]
    search_fields = ["product__code", "product__name", "plan__code", "dimension"]
    autocomplete_fields = ["product", "plan"]
    date_hierarchy = "effective_from"
    inlines = [PriceTierInline]
    change_list_template = "admin/pricing/pricerule/change_list.html"

    @admin.display(description="plan")
    def scope(self, rule: PriceRule) -> str:
        return rule.plan.code if rule.plan_id else "catalog default"

    @admin.display(description="status")
    def status(self, rule: PriceRule) -> str:
        now = timezone.now()
        if rule.effective_from > now:
            return "scheduled"
        return "in force" if rule.is_effective_at(now) else "ended"

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not _is_scheduled(obj):
            # History never changes: a price in force or past is read-only.
            return [field.name for field in PriceRule._meta.fields]
        return ["created_at"]

    def has_delete_permission(self, request, obj=None):
        return obj is None or _is_scheduled(obj)

    def save_model(self, request, obj, form, change):
        # Tiers are saved with the rule in save_related, where the formset is at hand.
        pass

    def save_related(self, request, form, formsets, change):
        rule = form.instance
        # Every field of a version in force is read-only: then there is nothing to save.
        if not change or _is_scheduled(PriceRule.objects.get(pk=rule.pk)):
            tier_formset = next(f for f in formsets if isinstance(f, PriceTierFormSet))
            services.save_price_version(rule=rule, tiers=tier_formset.tier_specs)
        # The admin's change message reads what the formsets saved.
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        services.invalidate_pricing_cache()

    def delete_queryset(self, request, queryset: QuerySet[PriceRule]) -> None:
        super().delete_queryset(request, queryset.filter(effective_from__gt=timezone.now()))
        services.invalidate_pricing_cache()

    def get_urls(self):
        preview = path(
            "what-would-it-cost/",
            self.admin_site.admin_view(self.cost_preview_view),
            name="pricing_pricerule_cost_preview",
        )
        return [preview, *super().get_urls()]

    def cost_preview_view(self, request: HttpRequest) -> HttpResponse:
        """Runs the cost engine on a plan, product and quantities; changes nothing."""
        form = CostPreviewForm(request.GET or None)
        quote = error = None
        if form.is_valid():
            quote, error = form.run()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "What would this cost?",
            "form": form,
            "quote": quote,
            "error": error,
        }
        return TemplateResponse(request, "admin/pricing/cost_preview.html", context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "cost_preview_url": reverse("admin:pricing_pricerule_cost_preview"),
        }
        return super().changelist_view(request, extra_context)


@admin.register(IncludedQuota)
class IncludedQuotaAdmin(AuditedAdmin, CatalogAdmin):
    """Inclusions are edited on their plan; this list shows them all at once."""

    list_display = ["plan", "product", "service_type", "quantity", "period"]
    list_filter = ["plan", "period"]
    list_select_related = ["plan", "product", "service_type"]
    autocomplete_fields = ["plan", "product", "service_type"]


@admin.register(PriceTier)
class PriceTierAdmin(AuditedAdmin, admin.ModelAdmin):
    """Tiers belong to their price rule (edited there, never afterwards): read here."""

    list_display = ["rule", "up_to", "unit_price", "flat_fee"]
    list_select_related = ["rule__product", "rule__plan"]
    search_fields = ["rule__product__code"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
