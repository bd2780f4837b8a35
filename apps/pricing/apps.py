from django.apps import AppConfig


class PricingConfig(AppConfig):
    name = "apps.pricing"
    label = "pricing"
    verbose_name = "Pricing"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.pricing.models import Plan
        from apps.pricing.selectors import CATALOG

        def plan_changed(sender, **kwargs) -> None:
            CATALOG.invalidate()  # the default plan is remembered per process

        post_save.connect(plan_changed, sender=Plan, dispatch_uid="pricing:plan-saved")
        post_delete.connect(plan_changed, sender=Plan, dispatch_uid="pricing:plan-deleted")
