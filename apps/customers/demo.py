"""Demo organisation, users and keys for the embedded default (never in production)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.customers import selectors, services, wallets
from apps.customers.models import ApiKey, Membership, Organization
from apps.pricing.models import Plan

DEMO_SLUG = "demo"
ADMIN_USERNAME, ADMIN_PASSWORD = "admin", "admin-demo-password"
CUSTOMER_USERNAME, CUSTOMER_PASSWORD = "customer", "customer-demo-password"
# Fixed, documented demo keys, so every run of the demo prints keys that work.
DEMO_ORGANIZATION_KEY = "bp_org_demo0org_DemoOrganizationKeyNotForProductionUse01"
DEMO_SERVICE_KEY = "bp_svc_demo0svc_DemoServiceKeyNotForProductionUse0000001"


@dataclass(frozen=True)
class DemoCustomers:
    organization: Organization
    organization_key: str
    service_key: str


def _ensure_key(*, raw_key: str, name: str, organization: Organization | None) -> str:
    prefix = ApiKey.prefix_of(raw_key)
    if not ApiKey.objects.filter(prefix=prefix).exists():
        services.issue_api_key(
            name=name,
            organization=organization,
            service=organization is None,
            raw_key=raw_key,
        )
    else:
        ApiKey.objects.filter(prefix=prefix).update(revoked_at=None)
        selectors.ACCESS.invalidate()
    return raw_key


@transaction.atomic
def seed_customers(*, plan: Plan | None = None) -> DemoCustomers:
    """Creates (or brings back to its demo state) the demo organisation, users and keys."""
    User = get_user_model()
    organization, _ = Organization.objects.update_or_create(
        slug=DEMO_SLUG,
        defaults={
            "name": "Demo Labs",
            "billing_email": "billing@demo.example",
            "currency": "USD",
            "time_zone": "Europe/Berlin",
            "status": Organization.Status.ACTIVE,
            "plan": plan,
        },
    )
    admin, _ = User.objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"email": "admin@demo.example"}
    )
    admin.is_staff = admin.is_superuser = True
    admin.set_password(ADMIN_PASSWORD)
    admin.save()

    customer, _ = User.objects.get_or_create(
        username=CUSTOMER_USERNAME,
        defaults={"email": "customer@demo.example", "first_name": "Dana", "last_name": "Demo"},
    )
    customer.is_staff = customer.is_superuser = False
    customer.set_password(CUSTOMER_PASSWORD)
    customer.save()
    services.add_member(organization=organization, user=customer, role=Membership.Role.OWNER)
    # A second organisation where the demo customer only reads: the switcher and the
    # viewer role on every page.
    research, _ = Organization.objects.update_or_create(
        slug=f"{DEMO_SLUG}-research",
        defaults={"name": "Demo Research", "billing_email": "research@demo.example",
                  "currency": "USD", "time_zone": "UTC", "plan": None},
    )  # fmt: skip
    services.add_member(organization=research, user=customer, role=Membership.Role.VIEWER)
    # Prepaid money and welcome credits, each written once whatever the number of runs.
    wallets.top_up_wallet(
        organization=organization, amount=Decimal(50), actor="demo", reason="demo top-up",
        reference="demo-top-up",
    )  # fmt: skip
    wallets.grant_credits(
        organization=organization, amount=Decimal(10), reason="welcome credits",
        granted_by="demo", reference="demo-welcome-credits",
    )  # fmt: skip

    return DemoCustomers(
        organization=organization,
        organization_key=_ensure_key(
            raw_key=DEMO_ORGANIZATION_KEY, name="Demo organisation key", organization=organization
        ),
        service_key=_ensure_key(
            raw_key=DEMO_SERVICE_KEY, name="Demo service key", organization=None
        ),
    )


def top_up_after_usage(organization: Organization) -> None:
    """A second top-up, once, after the demo usage spent the first: the wallet page shows a
    balance and a ledger that goes both ways."""
    wallets.top_up_wallet(
        organization=organization, amount=Decimal(100), actor="demo", reason="demo top-up",
        reference="demo-top-up-2",
    )  # fmt: skip
