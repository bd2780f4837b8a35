from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.budgets import demo as budgets_demo
from apps.customers import demo as customers_demo
from apps.pricing import demo as pricing_demo
from apps.usage import demo as usage_demo


class Command(BaseCommand):
    help = (
        "Creates the demo data (idempotent): catalog and plans, organisation, users, keys. "
        "Never in production."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--without-usage",
            action="store_true",
            help="Only the catalog, organisations, users, keys and budgets: no usage history.",
        )

    def handle(self, *args, **options) -> None:
        if not settings.DEMO_DATA_ALLOWED:
            raise CommandError("seed_demo refuses to run under production settings.")
        plans = pricing_demo.seed_catalog()
        usage_demo.seed_meters()
        customers = customers_demo.seed_customers(plan=plans["pro"])
        organization = customers.organization
        budgets_demo.seed_budgets(organization)
        if not options["without_usage"]:
            self.stdout.write("Recording four weeks of demo usage (the first run only)...")
            accepted = usage_demo.seed_usage(organization, write=self.stdout.write)
            if accepted:
                self.stdout.write(f"  {accepted} events recorded")
            customers_demo.top_up_after_usage(organization)
            statement = usage_demo.close_last_month(organization)
            month = statement.period_start.astimezone(organization.tz)
            self.stdout.write(f"  statement of {month:%B %Y}: {statement.status}")
        budgets_demo.seed_channel(organization)
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
        self.stdout.write("")
        self.stdout.write(
            f"  organisation        {customers.organization.slug} (plan: {plans['pro'].name})"
        )
        self.stdout.write(f"  organisation key    {customers.organization_key}")
        self.stdout.write(f"  service key         {customers.service_key}")
        self.stdout.write(
            f"  staff login         {customers_demo.ADMIN_USERNAME} / "
            f"{customers_demo.ADMIN_PASSWORD}   (/admin/)"
        )
        self.stdout.write(
            f"  customer login      {customers_demo.CUSTOMER_USERNAME} / "
            f"{customers_demo.CUSTOMER_PASSWORD}   (/billing/)"
        )
