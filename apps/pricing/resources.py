"""Price sheets as CSV/XLSX files (django-import-export).

One row per price version. Importing shows a preview (every row with what it would do)
before anything is saved; rows that already exist unchanged are skipped, so a sheet can be
imported again safely; a new row is a new version through the same service as the admin.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime
from import_export import fields, resources, widgets

from apps.pricing import services
from apps.pricing.errors import PortalError
from apps.pricing.models import Plan, PriceRule, Product


class IsoDateTimeWidget(widgets.Widget):
    def clean(self, value, row=None, **kwargs):
        if value in (None, ""):
            return None
        if hasattr(value, "tzinfo"):
            return value
        parsed = parse_datetime(str(value).strip())
        if parsed is None or parsed.tzinfo is None:
            raise ValueError(f"{value!r} is not an ISO 8601 date-time with a time zone.")
        return parsed

    def render(self, value, obj=None, **kwargs):
        return value.isoformat() if value else ""


class PriceRuleResource(resources.ModelResource):
    plan = fields.Field(
        attribute="plan", column_name="plan", widget=widgets.ForeignKeyWidget(Plan, "code")
    )
    product = fields.Field(
        attribute="product",
        column_name="product",
        widget=widgets.ForeignKeyWidget(Product, "code"),
    )
    effective_from = fields.Field(
        attribute="effective_from", column_name="effective_from", widget=IsoDateTimeWidget()
    )
    effective_to = fields.Field(
        attribute="effective_to", column_name="effective_to", widget=IsoDateTimeWidget()
    )
    tiers = fields.Field(column_name="tiers")

    class Meta:
        model = PriceRule
        fields = (
            "plan",
            "product",
            "dimension",
            "pricing_model",
            "unit_price",
            "tiers",
            "package_size",
            "package_price",
            "free_allowance",
            "minimum_charge",
            "effective_from",
            "effective_to",
        )
        export_order = fields
        import_id_fields = ("plan", "product", "dimension", "effective_from")
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def get_queryset(self):
        return PriceRule.objects.select_related("plan", "product").prefetch_related("tiers")

    def dehydrate_tiers(self, rule: PriceRule) -> str:
        return services.tiers_to_text(rule) if rule.pk else ""

    def import_instance(self, instance, row, **kwargs):
        super().import_instance(instance, row, **kwargs)
        instance._imported_tiers = services.tiers_from_text(row.get("tiers") or "")

    def skip_row(self, instance, original, row, import_validation_errors=None):
        if original is not None and original.pk:
            unchanged = super().skip_row(instance, original, row, import_validation_errors)
            if not unchanged:
                raise ValidationError(
                    "This version exists with other values; a published price never "
                    "changes. Give the new price a later effective_from."
                )
            return True
        return False

    def save_instance(self, instance, is_create, row, **kwargs):
        try:
            services.save_price_version(rule=instance, tiers=instance._imported_tiers)
        except PortalError as error:
            raise ValidationError(f"{error.message} {error.details}") from error
