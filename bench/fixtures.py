"""The benchmark's organisations, created fresh for each run (so each run meets the same
state: empty budget periods, a full wallet, credits, an inclusion not yet used).

    manage.py shell -c "from bench.fixtures import main; main('<run>')"

prints one JSON line: the keys of the bare organisation, the enforced one, the 50
organisations of the fleet and the ceiling's."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.budgets.models import Budget
from apps.budgets.services import save_budget
from apps.customers import services, wallets
from apps.customers.models import ApiKey, Organization
from apps.pricing import services as pricing
from apps.pricing.cost_engine import PricingModel
from apps.pricing.demo import CATALOG_START, seed_catalog
from apps.pricing.models import IncludedQuota, Plan, PriceRule, Product
from apps.pricing.services import TierSpec

FLEET = 50
# The enforced organisation's events cycle over these (see bench/ingest.py): a
# per-dimension token price, a graduated price and a package price.
PRODUCTS = ("gpt-4o-mini", "agent-run", "gateway-request")


def enforced_plan() -> Plan:
    """The catalog's prices, 200,000 included tokens a month (they run out in the first
    seconds of a run) and a graduated price on agent runs."""
    seed_catalog()
    plan, _ = Plan.objects.update_or_create(
        code="bench-enforced",
        defaults={"name": "Bench (enforced)", "tier": "pro", "base_fee": Decimal(49),
                  "currency": "USD", "trial_days": 0, "sort_order": 9},
    )  # fmt: skip
    agent_run = Product.objects.get(code="agent-run")
    if not PriceRule.objects.filter(plan=plan, product=agent_run).exists():
        pricing.create_price_version(
            plan=plan,
            product=agent_run,
            dimension="units",
            pricing_model=PricingModel.GRADUATED,
            effective_from=CATALOG_START,
            tiers=[
                TierSpec(Decimal(100), Decimal("0.02")),
                TierSpec(Decimal(1_000), Decimal("0.015")),
                TierSpec(None, Decimal("0.01")),
            ],  # fmt: skip
        )
    IncludedQuota.objects.update_or_create(
        plan=plan, product=None, service_type_id="model_inference", period="month",
        defaults={"quantity": Decimal(200_000)},
    )  # fmt: skip
    return plan


def key_of(organization: Organization, name: str = "bench") -> tuple[str, ApiKey]:
    issued = services.issue_api_key(name=name, organization=organization)
    return issued.raw_key, issued.api_key


def enforced(run: str, slug: str, plan: Plan) -> str:
    """An organisation with everything that enforcement checks: a hard monthly budget on
    everything, a soft daily budget on model inference, a hard budget on its key, a funded
    wallet and a credit grant."""
    organization = services.create_organization(
        name=f"Enforced {slug}", slug=slug, billing_email=f"{slug}@example.com"
    )
    organization.plan = plan
    organization.save(update_fields=["plan"])
    raw, api_key = key_of(organization)
    for budget in (
        Budget(organization=organization, name="Monthly cap", limit=Decimal(1_000_000),
               currency="USD", is_hard=True),
        Budget(organization=organization, name="Inference today", limit=Decimal(100_000),
               currency="USD", is_hard=False, period=Budget.Period.DAILY,
               scope=Budget.Scope.SERVICE_TYPE, service_type_id="model_inference"),
        Budget(organization=organization, name="This key", limit=Decimal(500_000),
               currency="USD", is_hard=True, scope=Budget.Scope.API_KEY, api_key=api_key),
    ):  # fmt: skip
        save_budget(budget)
    wallets.top_up_wallet(organization=organization, amount=Decimal(100_000),
                          actor="bench", reason="bench", reference=f"{slug}-top-up")  # fmt: skip
    wallets.grant_credits(organization=organization, amount=Decimal(5), reason="bench",
                          granted_by="bench", expires_at=timezone.now() + timedelta(days=30),
                          reference=f"{slug}-credits")  # fmt: skip
    return raw


@transaction.atomic
def main(run: str) -> None:
    plan = enforced_plan()
    pro = Plan.objects.get(code="pro")
    bare, _ = Organization.objects.update_or_create(
        slug="bench", defaults={"name": "Bench", "billing_email": "bench@example.com",
                                "plan": pro, "time_zone": "UTC"},
    )  # fmt: skip
    ApiKey.objects.filter(organization=bare, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    keys = {
        "run": run,
        "bare": key_of(bare)[0],
        "enforced": enforced(run, f"enforced-{run}", plan),
        "fleet": [enforced(run, f"fleet-{run}-{n:02}", plan) for n in range(FLEET)],
    }
    ceiling = services.create_organization(
        name=f"Ceiling {run}", slug=f"ceiling-{run}", billing_email="ceiling@example.com"
    )
    save_budget(Budget(organization=ceiling, name="Cap", limit=Decimal(1_000_000_000),
                       currency="USD", is_hard=True))  # fmt: skip
    keys["ceiling"] = key_of(ceiling)[0]
    print(json.dumps(keys))
