"""Creates or updates the Stripe products, prices and meters of every active plan and
metered product, and links them (``apps/pricing/stripe_catalog.py``). Re-running changes
nothing."""

from django.core.management.base import BaseCommand, CommandError

from apps.core import stripe_gateway
from apps.core.errors import PortalError
from apps.core.progress import progress
from apps.pricing import stripe_catalog
from apps.pricing.services import invalidate_pricing_cache


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options) -> None:
        report = stripe_catalog.SyncReport()
        items = stripe_catalog.steps()
        try:
            stripe_gateway.api_key()
            for item in progress(items, len(items), self.stdout.write, "plans and products"):
                stripe_catalog.sync_one(item, report)
        except PortalError as error:
            raise CommandError(error.message) from None
        invalidate_pricing_cache()
        for line in report.created:
            self.stdout.write(f"created  {line}")
        for line in report.updated:
            self.stdout.write(f"updated  {line}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(report.created)} created, {len(report.updated)} updated, "
                f"{len(report.unchanged)} unchanged"
            )
        )
