"""Forms of the customer pages (customers app)."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from apps.customers.models import ApiKey, Membership
from apps.customers.services import ORGANIZATION_KEY_SCOPES
from apps.pricing.currencies import minor_unit_quantum
from apps.pricing.models import Plan

MAX_TOP_UP = Decimal(100_000)


class TopUpForm(forms.Form):
    amount = forms.DecimalField(
        label="Amount", min_value=Decimal(1), max_value=MAX_TOP_UP, max_digits=12,
        help_text="Paid by card through Stripe Checkout; the wallet is credited when Stripe "
        "confirms the payment.",
    )  # fmt: skip

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.fields["amount"].label = f"Amount ({currency})"
        self.fields["amount"].widget.attrs["step"] = str(minor_unit_quantum(currency))

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount != amount.quantize(minor_unit_quantum(self.currency)):
            raise forms.ValidationError(f"At most the {self.currency} minor unit.")
        return amount


class PlanChoiceForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.none(), to_field_name="code")

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.filter(
            is_active=True, is_public=True, currency=currency
        )


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name", help_text="Where the key is used.")
    scopes = forms.MultipleChoiceField(
        choices=[(s.value, s.label) for s in ApiKey.Scope if s.value in ORGANIZATION_KEY_SCOPES],
        initial=[ApiKey.Scope.USAGE_WRITE, ApiKey.Scope.BILLING_READ],
        widget=forms.CheckboxSelectMultiple,
        label="Permissions",
    )


class MemberForm(forms.Form):
    email = forms.EmailField(label="Email of an existing user")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.VIEWER)
