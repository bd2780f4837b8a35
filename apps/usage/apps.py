from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "apps.usage"
    label = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from apps.usage import stripe_invoices  # noqa: F401
