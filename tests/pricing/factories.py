from datetime import UTC, datetime
from decimal import Decimal

import factory

from apps.pricing import services
from apps.pricing.cost_engine import PricingModel
from apps.pricing.models import IncludedQuota, Plan, Product, ServiceType

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


class ServiceTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceType
        django_get_or_create = ["code"]

    code = "model_inference"
    name = factory.LazyAttribute(lambda o: o.code.replace("_", " ").title())


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    code = factory.Sequence(lambda n: f"product-{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    service_type = factory.SubFactory(ServiceTypeFactory)
    unit = "token"
    dimensions = factory.LazyFunction(lambda: ["units"])


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan

    code = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    tier = "pro"
    base_fee = Decimal(49)
    currency = "USD"


class IncludedQuotaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IncludedQuota

    plan = factory.SubFactory(PlanFactory)
    quantity = Decimal(1000)
    period = "month"


def price(product, *, plan=None, dimension="units", unit_price="0.01", since=SINCE, **terms):
    """A per-unit price (or any terms) for ``product``, in force from ``since``."""
    terms.setdefault("pricing_model", PricingModel.PER_UNIT)
    return services.create_price_version(
        plan=plan,
        product=product,
        dimension=dimension,
        effective_from=since,
        unit_price=Decimal(unit_price),
        **terms,
    )
