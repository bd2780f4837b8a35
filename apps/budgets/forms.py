"""Forms of the budget and alert channel pages. Validation is the models' own ``clean``
(the same rules as the API and the admin)."""

from __future__ import annotations

from django import forms

from apps.budgets.models import Budget, NotificationChannel
from apps.customers.models import ApiKey


class ThresholdsField(forms.CharField):
    """Percentages as "50, 80, 100"."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        text = super().to_python(value)
        try:
            return [int(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            raise forms.ValidationError("Whole percentages separated by commas.") from None


class BudgetForm(forms.ModelForm):
    thresholds = ThresholdsField(
        initial="80, 100", help_text="Alerts at these percentages of the limit, e.g. 50, 80, 100."
    )

    class Meta:
        model = Budget
        fields = ["name", "scope", "service_type", "product", "api_key", "period", "limit",
                  "is_hard", "thresholds", "is_active"]  # fmt: skip
        labels = {
            "is_hard": "Hard limit (refuse usage past it)",
            "is_active": "Active",
            "api_key": "API key",
        }
        help_texts = {
            "scope": "What the budget counts: everything, or one service, product or key."
        }

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.organization = organization
        self.instance.currency = organization.currency
        self.fields["limit"].label = f"Limit ({organization.currency})"
        self.fields["api_key"].queryset = ApiKey.objects.filter(
            organization=organization, revoked_at__isnull=True
        )
        self.fields["product"].queryset = self.fields["product"].queryset.filter(is_active=True)

    def clean(self):
        data = super().clean()
        scope = data.get("scope")
        # Only the target the scope names is kept (the form shows all three).
        for field, owner in (("service_type", "service_type"), ("product", "product"),
                             ("api_key", "api_key")):  # fmt: skip
            if scope != owner:
                data[field] = None
            elif not data.get(field):
                self.add_error(field, "Choose one for this scope.")
        return data


class ChannelForm(forms.ModelForm):
    class Meta:
        model = NotificationChannel
        fields = ["kind", "target"]
        labels = {"kind": "Kind", "target": "Email address or Apprise URL"}
        help_texts = {
            "target": "An email address, or an Apprise URL such as slack://… or json://host/path."
        }

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.organization = organization

    def validate_unique(self):
        # The organisation is not a form field, so the model's check is made here.
        super().validate_unique()
        if (
            NotificationChannel.objects.filter(
                organization=self.instance.organization,
                kind=self.cleaned_data.get("kind"),
                target=self.cleaned_data.get("target"),
            )
            .exclude(pk=self.instance.pk)
            .exists()
        ):
            self.add_error("target", "This channel is already set up.")
