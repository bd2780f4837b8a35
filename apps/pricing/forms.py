"""Forms of the pricing app's staff pages."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms
from django.utils import timezone

from apps.pricing import selectors
from apps.pricing.errors import PortalError
from apps.pricing.models import Plan, Product


def parse_quantities(text: str) -> dict[str, Decimal]:
    """``input_tokens=1000, output_tokens=200`` (or a bare number for the first dimension,
    given as the key ``""``)."""
    quantities: dict[str, Decimal] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, value = part.rpartition("=")
        try:
            quantity = Decimal(value.strip())
        except InvalidOperation:
            raise forms.ValidationError(f"{value.strip()!r} is not a number.") from None
        if not quantity.is_finite() or quantity < 0:
            raise forms.ValidationError("Quantities are finite and not negative.")
        quantities[name.strip()] = quantity
    return quantities


class CostPreviewForm(forms.Form):
    plan = forms.ModelChoiceField(
        Plan.objects.all(),
        required=False,
        empty_label="(the default plan)",
        help_text="Leave empty for the plan organisations without one are on.",
    )
    product = forms.ModelChoiceField(Product.objects.filter(is_active=True))
    quantities = forms.CharField(
        help_text="A number, or per dimension: input_tokens=1000, output_tokens=200",
    )
    period_to_date = forms.CharField(
        required=False,
        help_text="Units already used in the period, same form (affects tiers and allowances).",
    )
    included_used = forms.DecimalField(
        required=False, min_value=0, help_text="How much of the plan's inclusion is used."
    )
    at = forms.DateTimeField(required=False, help_text="Price at this instant (default: now).")

    def clean_quantities(self):
        return parse_quantities(self.cleaned_data["quantities"])

    def clean_period_to_date(self):
        return parse_quantities(self.cleaned_data.get("period_to_date") or "")

    def _with_dimensions(self, product: Product, quantities: dict[str, Decimal]):
        named = dict(quantities)
        if "" in named:
            named[product.default_dimension] = named.pop("")
        unknown = set(named) - set(product.dimensions)
        if unknown:
            raise forms.ValidationError(
                f"{product.code} has the dimensions {', '.join(product.dimensions)}; "
                f"not {', '.join(sorted(unknown))}."
            )
        return named

    def run(self) -> tuple[selectors.Quote | None, str | None]:
        data = self.cleaned_data
        product = data["product"]
        try:
            quantities = self._with_dimensions(product, data["quantities"])
            period_to_date = self._with_dimensions(product, data["period_to_date"])
            quote = selectors.quote(
                plan=data["plan"] or selectors.default_plan(),
                product=product,
                quantities=quantities,
                at=data["at"] or timezone.now(),
                period_to_date=period_to_date,
                included_used=data["included_used"] or Decimal(0),
            )
        except (forms.ValidationError, PortalError) as error:
            message = error.message if isinstance(error, PortalError) else error.messages[0]
            return None, message
        return quote, None
