from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "apps.customers"
    label = "customers"
    verbose_name = "Customers"

    def ready(self) -> None:
        import stripe
        from django.conf import settings

        if settings.STRIPE_API_BASE != stripe.DEFAULT_API_BASE:
            stripe.api_base = stripe.meter_events_api_base = settings.STRIPE_API_BASE
        from apps.customers import receivers, signals  # noqa: F401

        _keep_djstripe_callback_check_without_its_deprecation()


def _keep_djstripe_callback_check_without_its_deprecation() -> None:
    """dj-stripe 2.11 still calls ``DJSTRIPE_WEBHOOK_EVENT_CALLBACK`` (the only hook that
    keeps processing out of the request, which is why the portal sets it) but its check
    warns that the setting is deprecated, with no id to silence. That check is replaced by
    one that keeps its error (the callback's signature) and drops the warning."""
    from django.core import checks
    from django.core.checks.registry import registry
    from djstripe import checks as djstripe_checks

    original = djstripe_checks.check_webhook_event_callback_accepts_api_key
    registry.registered_checks.discard(original)

    @checks.register("djstripe")
    def check_webhook_event_callback(app_configs=None, **kwargs):
        return [message for message in original(app_configs, **kwargs) if message.id]
