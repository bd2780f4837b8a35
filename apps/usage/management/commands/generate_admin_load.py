"""Fills a PostgreSQL database with an admin-sized load: organisations on the demo plans,
``--events`` usage events (default 1,000,000) spread over the last ``--days`` days, of
which ``--records`` (default 10,000) carry a billing record with its first billing event,
their daily rollup, budgets with current periods, wallets and credit grants. Rows are
made by the database itself (INSERT ... SELECT over generate_series), in chunks, with a
progress bar. For measuring the admin (``bench/admin.py``); never in production."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from apps.budgets.models import Budget, BudgetPeriod
from apps.core.progress import progress
from apps.customers import wallets
from apps.customers.models import Organization
from apps.pricing.demo import seed_catalog
from apps.pricing.models import Product
from apps.pricing.periods import MONTH, period_bounds

CHUNK = 50_000

EVENTS_SQL = """
INSERT INTO usage_usageevent (organization_id, idempotency_key, fingerprint, product_id,
    service_type, user_id, session_id, api_key_id, quantity, quantities, usage_details,
    occurred_at, received_at)
SELECT o.ids[1 + (n %% array_length(o.ids, 1))],
       %(run)s || '-' || n, md5(n::text), p.ids[1 + (n %% array_length(p.ids, 1))],
       p.types[1 + (n %% array_length(p.ids, 1))], 'user' || (n %% 997), '', NULL,
       1 + (n %% 5000), jsonb_build_object('units', (1 + (n %% 5000))::text), '{}'::jsonb,
       now() - make_interval(secs => (n::bigint * %(spread)s) %% (%(days)s * 86400)),
       now() - make_interval(secs => (n::bigint * %(spread)s) %% (%(days)s * 86400))
FROM generate_series(%(start)s, %(stop)s) AS n,
     (SELECT %(orgs)s::bigint[] AS ids) o,
     (SELECT %(products)s::bigint[] AS ids, %(types)s::varchar[] AS types) p
"""

RECORDS_SQL = """
INSERT INTO usage_billingrecord (billing_id, event_id, organization_id, user_id, product_id,
    service_type, usage_amount, included_quantity, unit_price, total_amount, currency,
    billing_method, status, breakdown, occurred_at, created_at, updated_at)
SELECT 'bill_load_' || e.id, e.id, e.organization_id, e.user_id, e.product_id,
       e.service_type, e.quantity, 0, 0.001, e.quantity * 0.001, 'USD',
       (ARRAY['payment_charge', 'wallet_deduction', 'credit_consumption'])[1 + e.id %% 3],
       CASE WHEN e.id %% 3 = 0 THEN (ARRAY['pending', 'completed', 'failed'])[1 + e.id %% 7 %% 3]
            ELSE 'completed' END,
       '[]'::jsonb, e.occurred_at, e.received_at, e.received_at
FROM usage_usageevent e
WHERE e.idempotency_key LIKE %(run)s || '-%%'
  AND NOT EXISTS (SELECT 1 FROM usage_billingrecord r WHERE r.event_id = e.id)
ORDER BY e.id
LIMIT %(limit)s
"""

BILLING_EVENTS_SQL = """
INSERT INTO usage_billingevent (record_id, from_status, to_status, billing_method, amount,
    actor, reason, created_at)
SELECT r.id, '', r.status, r.billing_method, r.total_amount, 'load', 'usage recorded',
       r.created_at
FROM usage_billingrecord r
WHERE r.billing_id LIKE 'bill_load_%%'
  AND NOT EXISTS (SELECT 1 FROM usage_billingevent b WHERE b.record_id = r.id)
"""

ROLLUP_SQL = """
INSERT INTO usage_dailyusage (organization_id, product_id, service_type, user_id,
    billing_method, day, quantity, cost, event_count)
SELECT r.organization_id, r.product_id, r.service_type, r.user_id, r.billing_method,
       (r.occurred_at AT TIME ZONE 'UTC')::date, sum(r.usage_amount), sum(r.total_amount),
       count(*)
FROM usage_billingrecord r
WHERE r.billing_id LIKE 'bill_load_%%'
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (organization_id, product_id, user_id, billing_method, day) DO NOTHING
"""


class Command(BaseCommand):
    help = __doc__.split("\n")[0]

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, default=1_000_000)
        parser.add_argument("--records", type=int, default=10_000)
        parser.add_argument("--organizations", type=int, default=200)
        parser.add_argument("--days", type=int, default=60)

    def handle(self, *args, events, records, organizations, days, **options):
        if not settings.DEMO_DATA_ALLOWED:
            raise CommandError("generate_admin_load refuses to run under production settings.")
        if connection.vendor != "postgresql":
            raise CommandError("generate_admin_load needs PostgreSQL (DATABASE_URL).")
        plans = list(seed_catalog().values())
        orgs = []
        for index in progress(range(organizations), organizations, self.stdout.write,
                              "organisations"):  # fmt: skip
            organization, created = Organization.objects.get_or_create(
                slug=f"load-{index:04d}",
                defaults={"name": f"Load {index:04d}", "billing_email": f"b{index}@load.example",
                          "plan": plans[index % len(plans)],
                          "subscription_status": ["active", "trialing", "past_due", ""][index % 4]},
            )  # fmt: skip
            orgs.append(organization)
            if created:
                self._extras(organization, index)
        products = list(Product.objects.filter(is_active=True).order_by("pk"))
        run = f"load{timezone.now():%Y%m%d%H%M%S}"
        params = {
            "run": run,
            "orgs": [o.pk for o in orgs],
            "products": [p.pk for p in products],
            "types": [p.service_type_id for p in products],
            "days": days,
            "spread": 7919,
        }
        chunks = range(0, events, CHUNK)
        with connection.cursor() as cursor:
            for start in progress(chunks, len(chunks), self.stdout.write, "usage events"):
                stop = min(events, start + CHUNK) - 1
                with transaction.atomic():
                    cursor.execute(EVENTS_SQL, {**params, "start": start, "stop": stop})
            self.stdout.write(f"billing records: {records:,}")
            with transaction.atomic():
                cursor.execute(RECORDS_SQL, {"run": run, "limit": records})
                cursor.execute(BILLING_EVENTS_SQL)
                cursor.execute(ROLLUP_SQL)
            self.stdout.write("ANALYZE")
            cursor.execute("ANALYZE")
        self.stdout.write(self.style.SUCCESS(f"{events:,} events and {records:,} records added."))

    def _extras(self, organization: Organization, index: int) -> None:
        wallets.top_up_wallet(organization=organization, amount=Decimal(100 + index),
                              actor="load", reason="load", reference=f"load-{index}")  # fmt: skip
        wallets.grant_credits(organization=organization, amount=Decimal(10), reason="load",
                              granted_by="load", reference=f"load-credit-{index}")  # fmt: skip
        budget = Budget.objects.create(
            organization=organization, name="Monthly", limit=Decimal(500), currency="USD"
        )
        starts_at, ends_at = period_bounds(timezone.now(), MONTH, organization.tz)
        BudgetPeriod.objects.create(
            budget=budget, starts_at=starts_at, ends_at=ends_at, spent=Decimal(index * 3 % 600)
        )
