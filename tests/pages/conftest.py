"""Two organisations with members of every role, budgets, keys, channels and usage."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from apps.budgets.models import Budget, NotificationChannel
from apps.customers import services
from apps.customers.models import ApiKey, Membership, Organization
from apps.usage import ingestion
from tests.customers.factories import OrganizationFactory, UserFactory

ROLES = ["viewer", "billing", "admin", "owner"]


@dataclass
class Tenant:
    organization: Organization
    budget: Budget
    api_key: ApiKey
    channel: NotificationChannel
    members: dict  # role -> user


def record(organization, product, n: int, *, user_id: str, days_ago: int = 0, prefix="e"):
    at = timezone.now() - timedelta(days=days_ago)
    events = [
        ingestion.EventInput(
            idempotency_key=f"{prefix}-{days_ago}-{i}",
            product_id=product.code,
            fingerprint=f"{prefix}-{days_ago}-{i}",
            usage_amount=Decimal(10),
            user_id=user_id,
            occurred_at=at,
        )
        for i in range(n)
    ]
    outcomes = ingestion.ingest(organization=organization, events=events)
    assert all(o.status == o.ACCEPTED for o in outcomes), [o.error for o in outcomes]


def make_tenant(slug: str, plan, product, user_id: str) -> Tenant:
    organization = OrganizationFactory(slug=slug, name=f"Org {slug.upper()}", plan=plan)
    members = {}
    for role in ROLES:
        user = UserFactory(username=f"{slug}-{role}", first_name=role.title())
        services.add_member(organization=organization, user=user, role=role)
        members[role] = user
    budget = Budget.objects.create(
        organization=organization, name=f"{slug} monthly", limit=Decimal(50), currency="USD",
        thresholds=[50, 100],
    )  # fmt: skip
    api_key = services.issue_api_key(name=f"{slug} key", organization=organization).api_key
    channel = NotificationChannel.objects.create(
        organization=organization, kind="email", target=f"alerts@{slug}.example"
    )
    for days_ago in (3, 1, 0):
        record(organization, product, 5, user_id=user_id, days_ago=days_ago, prefix=slug)
    return Tenant(organization, budget, api_key, channel, members)


@pytest.fixture
def tenants(plan, calls):
    return make_tenant("alpha", plan, calls, "alpha-user"), make_tenant(
        "beta", plan, calls, "beta-user"
    )


@pytest.fixture
def alpha(tenants):
    return tenants[0]


@pytest.fixture
def beta(tenants):
    return tenants[1]


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def as_role(alpha):
    """A client signed in as alpha's member of the given role."""
    return lambda role, **kwargs: signed_in(alpha.members[role], **kwargs)


def rank(role: str) -> int:
    return ROLES.index(role) if role != "admin" else 2


__all__ = ["Membership", "ROLES", "Tenant", "record", "signed_in", "rank"]
