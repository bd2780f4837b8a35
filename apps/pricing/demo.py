"""A realistic demo catalog: LLMs priced per million input/output tokens, agent runs, MCP
tool calls, storage, gateway requests and notifications, and three plans."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from apps.pricing import services
from apps.pricing.cost_engine import PricingModel
from apps.pricing.models import IncludedQuota, Plan, PriceRule, Product, ServiceType, Unit
from apps.pricing.services import TierSpec

CATALOG_START = datetime(2026, 1, 1, tzinfo=UTC)
PRICE_CUT = datetime(2026, 6, 1, tzinfo=UTC)
MILLION = Decimal(1_000_000)
TOKENS = ["input_tokens", "output_tokens"]


def per_million(price: str) -> Decimal:
    return Decimal(price) / MILLION


# code, name, service type, unit, dimensions, provider, model, catalog prices by dimension
PRODUCTS = [
    ("gpt-4", "GPT-4", "model_inference", Unit.TOKEN, TOKENS, "openai", "gpt-4", ("30", "60")),
    ("gpt-4o", "GPT-4o", "model_inference", Unit.TOKEN, TOKENS, "openai", "gpt-4o", ("2.5", "10")),
    (
        "gpt-4o-mini", "GPT-4o mini", "model_inference", Unit.TOKEN, TOKENS, "openai",
        "gpt-4o-mini", ("0.15", "0.6"),
    ),
    (
        "claude-sonnet-4", "Claude Sonnet 4", "model_inference", Unit.TOKEN, TOKENS, "anthropic",
        "claude-sonnet-4", ("3", "15"),
    ),
    (
        "llama-3.1-70b", "Llama 3.1 70B (hosted)", "model_inference", Unit.TOKEN, TOKENS, "meta",
        "llama-3.1-70b-instruct", ("0.6", "0.8"),
    ),
    # The tokens of agent invocations, whatever model the agent runs on (one blended price);
    # the demo's ``agent_invocation`` meter reads OpenMeter-style events into it.
    (
        "agent-tokens", "Agent tokens", "model_inference", Unit.TOKEN, TOKENS, "", "",
        ("1", "4"),
    ),
]  # fmt: skip


def _version(plan, product, dimension, **terms) -> None:
    """Adds the demo version unless this price already has one (idempotent)."""
    effective_from = terms.pop("effective_from", CATALOG_START)
    if PriceRule.objects.filter(
        plan=plan, product=product, dimension=dimension, effective_from=effective_from
    ).exists():
        return
    services.create_price_version(
        plan=plan, product=product, dimension=dimension, effective_from=effective_from, **terms
    )


def _product(code, name, service_type, unit, dimensions, provider="", model_name="") -> Product:
    product, _ = Product.objects.update_or_create(
        code=code,
        defaults={
            "name": name,
            "service_type_id": service_type,
            "unit": unit,
            "dimensions": dimensions,
            "provider": provider,
            "model_name": model_name,
            "is_active": True,
        },
    )
    return product


def _plan(code, **fields) -> Plan:
    plan, _ = Plan.objects.update_or_create(code=code, defaults=fields)
    return plan


def _include(plan, quantity, *, product=None, service_type=None) -> None:
    IncludedQuota.objects.update_or_create(
        plan=plan,
        product=product,
        service_type_id=service_type,
        period="month",
        defaults={"quantity": Decimal(quantity)},
    )


@transaction.atomic
def seed_catalog() -> dict[str, Plan]:
    services.ensure_builtin_service_types()
    ServiceType.objects.get_or_create(
        code="embedding", defaults={"name": "Embeddings", "description": "A custom type."}
    )
    products = {}
    for code, name, stype, unit, dims, provider, model_name, prices in PRODUCTS:
        product = products[code] = _product(code, name, stype, unit, dims, provider, model_name)
        if code == "gpt-4o":
            # The launch price, cut on 1 June: history keeps what January cost.
            _version(
                None,
                product,
                "input_tokens",
                pricing_model=PricingModel.PER_UNIT,
                unit_price=per_million("5"),
            )
            _version(
                None,
                product,
                "input_tokens",
                pricing_model=PricingModel.PER_UNIT,
                unit_price=per_million(prices[0]),
                effective_from=PRICE_CUT,
            )
        else:
            _version(
                None,
                product,
                "input_tokens",
                pricing_model=PricingModel.PER_UNIT,
                unit_price=per_million(prices[0]),
            )
        _version(
            None,
            product,
            "output_tokens",
            pricing_model=PricingModel.PER_UNIT,
            unit_price=per_million(prices[1]),
        )

    simple = {
        "text-embedding-3": ("Text embeddings", "embedding", Unit.TOKEN, "0.02", "openai"),
        "agent-run": ("Agent execution", "agent_execution", Unit.EXECUTION, "0.02", ""),
        "mcp-tool-call": ("MCP tool call", "mcp_service", Unit.CALL, "0.001", ""),
        "object-storage": ("Object storage", "storage_minio", Unit.GB_MONTH, "0.023", "minio"),
        "notification-message": ("Notification", "notification", Unit.MESSAGE, "0.0008", ""),
    }
    for code, (name, stype, unit, price, provider) in simple.items():
        product = products[code] = _product(code, name, stype, unit, ["units"], provider)
        unit_price = per_million(price) if code == "text-embedding-3" else Decimal(price)
        _version(None, product, "units", pricing_model=PricingModel.PER_UNIT, unit_price=unit_price)
    gateway = products["gateway-request"] = _product(
        "gateway-request", "Gateway request", "api_gateway", Unit.REQUEST, ["units"]
    )
    _version(
        None,
        gateway,
        "units",
        pricing_model=PricingModel.PACKAGE,
        package_size=Decimal(10_000),
        package_price=Decimal("0.50"),
    )

    free = _plan(
        "free",
        name="Free",
        tier="free",
        base_fee=Decimal(0),
        currency="USD",
        trial_days=0,
        is_default=True,
        sort_order=1,
        description="Try everything; monthly allowances, pay as you go beyond.",
    )
    pro = _plan(
        "pro",
        name="Pro",
        tier="pro",
        base_fee=Decimal(49),
        currency="USD",
        trial_days=14,
        sort_order=2,
        description="For teams in production: generous inclusions every month.",
    )
    enterprise = _plan(
        "enterprise",
        name="Enterprise",
        tier="enterprise",
        base_fee=Decimal(999),
        currency="USD",
        trial_days=30,
        sort_order=3,
        description="Volume prices on models, graduated agent prices.",
    )

    mini = products["gpt-4o-mini"]
    _version(
        free,
        mini,
        "input_tokens",
        pricing_model=PricingModel.PER_UNIT,
        unit_price=per_million("0.15"),
        free_allowance=Decimal(200_000),
    )
    _version(
        free,
        mini,
        "output_tokens",
        pricing_model=PricingModel.PER_UNIT,
        unit_price=per_million("0.6"),
        free_allowance=Decimal(100_000),
    )
    _version(
        free,
        products["agent-run"],
        "units",
        pricing_model=PricingModel.PER_UNIT,
        unit_price=Decimal("0.02"),
        free_allowance=Decimal(20),
    )
    _version(
        free,
        gateway,
        "units",
        pricing_model=PricingModel.PACKAGE,
        package_size=Decimal(10_000),
        package_price=Decimal("0.50"),
        free_allowance=Decimal(10_000),
    )

    _include(pro, 1_000_000, service_type="model_inference")
    _include(pro, 1_000, product=products["agent-run"])
    _include(pro, 10_000, service_type="mcp_service")

    _include(enterprise, 10_000_000, service_type="model_inference")
    for dimension, prices in (
        ("input_tokens", ("2.5", "2", "1.5")),
        ("output_tokens", ("10", "8", "6")),
    ):
        _version(
            enterprise,
            products["gpt-4o"],
            dimension,
            pricing_model=PricingModel.VOLUME,
            tiers=[
                TierSpec(Decimal(100_000_000), per_million(prices[0])),
                TierSpec(Decimal(1_000_000_000), per_million(prices[1])),
                TierSpec(None, per_million(prices[2])),
            ],
        )
    _version(
        enterprise,
        products["agent-run"],
        "units",
        pricing_model=PricingModel.GRADUATED,
        tiers=[
            TierSpec(Decimal(10_000), Decimal("0.02")),
            TierSpec(Decimal(100_000), Decimal("0.015")),
            TierSpec(None, Decimal("0.01")),
        ],
        minimum_charge=Decimal(100),
    )
    return {"free": free, "pro": pro, "enterprise": enterprise}
