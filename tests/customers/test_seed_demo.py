from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from apps.customers import demo, selectors, wallets
from apps.customers.models import ApiKey, Membership, Organization

pytestmark = pytest.mark.django_db


def run_seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_creates_the_demo_organization_users_and_keys():
    output = run_seed()

    organization = Organization.objects.get(slug="demo")
    customer = get_user_model().objects.get(username="customer")
    assert Membership.objects.get(user=customer, organization=organization).role == "owner"
    assert authenticate(RequestFactory().post("/"), username="admin",
                        password=demo.ADMIN_PASSWORD).is_staff  # fmt: skip
    assert authenticate(RequestFactory().post("/"), username="customer",
                        password=demo.CUSTOMER_PASSWORD) == customer  # fmt: skip
    assert demo.ADMIN_PASSWORD in output and demo.CUSTOMER_PASSWORD in output
    for raw_key in (demo.DEMO_ORGANIZATION_KEY, demo.DEMO_SERVICE_KEY):
        assert raw_key in output
        assert selectors.api_key_for_raw_key(raw_key) is not None


def test_seed_demo_is_idempotent():
    from apps.budgets.models import Budget, NotificationChannel
    from apps.usage.models import UsageEvent

    run_seed()
    organization = Organization.objects.get(slug="demo")
    first = {
        "wallet": wallets.wallet_balance(organization),
        "credits": wallets.credit_balance(organization),
        "events": UsageEvent.objects.count(),
        "budgets": Budget.objects.count(),
        "channels": NotificationChannel.objects.count(),
    }
    assert first["events"] > 1000 and first["budgets"] == 3 and first["channels"] == 1
    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")
    run_seed()

    assert Organization.objects.filter(slug="demo").count() == 1
    assert get_user_model().objects.filter(username__in=["admin", "customer"]).count() == 2
    assert Membership.objects.filter(organization__slug="demo").count() == 1
    assert ApiKey.objects.count() == 2
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert first == {
        "wallet": wallets.wallet_balance(organization),
        "credits": wallets.credit_balance(organization),
        "events": UsageEvent.objects.count(),
        "budgets": Budget.objects.count(),
        "channels": NotificationChannel.objects.count(),
    }


def test_without_usage_the_demo_keeps_its_opening_balances():
    call_command("seed_demo", "--without-usage", stdout=StringIO())
    organization = Organization.objects.get(slug="demo")
    assert wallets.wallet_balance(organization) == Decimal(50)
    assert wallets.credit_balance(organization) == Decimal(10)


def test_the_printed_demo_keys_work_on_the_api(api_client):
    run_seed()

    org = api_client.get("/api/v1/info", HTTP_X_API_KEY=demo.DEMO_ORGANIZATION_KEY)
    svc = api_client.get(
        "/api/v1/organization",
        {"organization_id": "demo"},
        HTTP_AUTHORIZATION=f"Bearer {demo.DEMO_SERVICE_KEY}",
    )

    assert org.status_code == 200 and org.json()["caller"]["organization_id"] == "demo"
    assert svc.status_code == 200 and svc.json()["name"] == "Demo Labs"


def test_seed_demo_refuses_to_run_where_demo_data_is_not_allowed(settings):
    settings.DEMO_DATA_ALLOWED = False

    with pytest.raises(CommandError, match="production"):
        run_seed()
    assert not Organization.objects.exists()
