"""What each page shows and does, with the data behind it."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.budgets.models import Budget, NotificationChannel
from apps.customers import billing
from apps.customers.models import ApiKey, Organization
from apps.customers.views import forecast
from apps.pricing.demo import seed_catalog
from apps.usage.models import DailyUsage
from tests.fake_stripe import invoice
from tests.pages.conftest import signed_in
from tests.stripe_webhooks import deliver_processed, session_id

pytestmark = pytest.mark.django_db


def body(response) -> str:
    return response.content.decode()


# --- overview -----------------------------------------------------------------------------


def test_the_forecast_extends_the_recent_daily_rate_to_the_period_end():
    recent = [Decimal(1)] * 10 + [Decimal(3)] * 7  # the last week at 3 a day
    assert forecast(Decimal(40), recent, days_left=5) == Decimal(55)
    assert forecast(Decimal(40), [Decimal(2)], days_left=3) == Decimal(46)  # day two
    assert forecast(Decimal(40), recent, days_left=0) == Decimal(40)  # last day
    assert forecast(Decimal(0), [], days_left=10) == Decimal(0)


def test_the_overview_shows_plan_spend_forecast_budgets_wallet_and_alerts(alpha):
    page = body(signed_in(alpha.members["viewer"]).get(reverse("billing:overview")))
    spent = sum(DailyUsage.objects.filter(organization=alpha.organization).values_list(
        "cost", flat=True))  # fmt: skip
    assert spent == Decimal("1.5")  # 15 events of 10 calls at $0.01
    assert "$1.50" in page
    assert alpha.organization.plan.name in page
    assert "Forecast at period end" in page
    # spent + (average of the last full days, at most 7, this period) x days left
    response = signed_in(alpha.members["viewer"]).get(reverse("billing:overview"))
    today = timezone.now().date()
    first = today.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    by_day = dict(
        DailyUsage.objects.filter(organization=alpha.organization, day__gte=first)
        .values_list("day", "cost")
    )  # fmt: skip
    days = (today - first).days
    full_days = [by_day.get(first + timedelta(days=i), Decimal(0)) for i in range(days)]
    recent = full_days[-7:] or [by_day.get(today, Decimal(0))]
    period_spent = sum(by_day.values(), Decimal(0))
    expected = period_spent + sum(recent, Decimal(0)) / len(recent) * (last - today).days
    assert response.context["forecast"] == expected
    assert page.count("<circle") >= 1  # the spend line has points
    assert 'role="progressbar"' in page and alpha.budget.name in page
    assert "Wallet and credits" in page


# --- usage --------------------------------------------------------------------------------


def test_the_usage_page_charts_and_tabulates_the_range(alpha):
    client = signed_in(alpha.members["viewer"])
    page = body(client.get(reverse("billing:usage"), {"split": "product", "metric": "cost"}))
    assert len(re.findall(r"<rect ", page)) == 3  # three days with usage, one product
    assert "Calls" in page or "calls" in page
    assert "alpha-user" in page  # the end-user breakdown
    assert "$1.50" in page


def test_an_impossible_range_is_a_clear_400(alpha):
    client = signed_in(alpha.members["viewer"])
    response = client.get(reverse("billing:usage"), {"start": "2026-05-02", "end": "2026-05-01"})
    assert response.status_code == 400
    assert "The start is after the end." in body(response)
    response = client.get(
        reverse("billing:usage-export"), {"start": "2020-01-01", "end": "2026-01-01"}
    )
    assert response.status_code == 400


def test_the_csv_export_does_not_let_a_user_id_run_as_a_formula(alpha, calls):
    from tests.pages.conftest import record

    record(alpha.organization, calls, 1, user_id='=HYPERLINK("http://x")', prefix="f")
    response = signed_in(alpha.members["viewer"]).get(reverse("billing:usage-export"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert """'=HYPERLINK("http://x")""" in {row["user_id"] for row in rows}


def test_the_csv_export_has_the_rollup_rows_of_the_range(alpha):
    response = signed_in(alpha.members["viewer"]).get(reverse("billing:usage-export"))
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == DailyUsage.objects.filter(organization=alpha.organization).count() == 3
    assert sum(Decimal(row["cost"]) for row in rows) == Decimal("1.5")
    assert {row["user_id"] for row in rows} == {"alpha-user"}
    assert sum(int(row["events"]) for row in rows) == 15


# --- budgets ------------------------------------------------------------------------------


def test_a_budget_is_created_with_its_thresholds_and_shown_with_its_period(alpha, calls):
    client = signed_in(alpha.members["billing"])
    response = client.post(reverse("billing:budget-new"), {
        "name": "Calls cap", "scope": "product", "product": calls.pk, "period": "daily",
        "limit": "2.50", "thresholds": "50, 80, 100", "is_hard": "on", "is_active": "on",
    })  # fmt: skip
    budget = Budget.objects.get(name="Calls cap")
    assert response.status_code == 302 and response["Location"].endswith(f"/{budget.pk}/")
    assert budget.thresholds == [50, 80, 100] and budget.currency == "USD"
    assert budget.organization == alpha.organization and budget.product == calls
    page = body(client.get(response["Location"]))
    assert "Calls cap" in page and "$2.50" in page


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"thresholds": "100, 50"}, "thresholds", "Ascending, distinct"),
        ({"thresholds": "eighty"}, "thresholds", "Whole percentages"),
        ({"limit": "-1"}, "limit", ""),
        ({"scope": "product"}, "product", "Choose one for this scope."),
        ({"limit": "0", "is_hard": "on"}, "limit", "A hard budget needs a limit above zero."),
    ],
)
def test_a_bad_budget_is_refused_with_the_reason_next_to_its_field(alpha, change, field, message):
    data = {"name": "Bad", "scope": "all", "period": "monthly", "limit": "10",
            "thresholds": "80, 100", "is_active": "on", **change}  # fmt: skip
    response = signed_in(alpha.members["billing"]).post(reverse("billing:budget-new"), data)
    assert response.status_code == 200
    assert response.context["form"].errors.get(field)
    assert message in body(response)
    assert not Budget.objects.filter(name="Bad").exists()


def test_pausing_and_deleting_a_budget(alpha):
    client = signed_in(alpha.members["admin"])
    url = reverse("billing:budget-toggle", kwargs={"budget_id": alpha.budget.pk})
    client.post(url)
    assert not Budget.objects.get(pk=alpha.budget.pk).is_active
    assert "paused" in body(client.get(reverse("billing:budgets")))
    client.post(url)
    assert Budget.objects.get(pk=alpha.budget.pk).is_active
    delete = reverse("billing:budget-delete", kwargs={"budget_id": alpha.budget.pk})
    assert "Delete" in body(client.get(delete))  # a confirmation first
    assert Budget.objects.filter(pk=alpha.budget.pk).exists()
    client.post(delete)
    assert not Budget.objects.filter(pk=alpha.budget.pk).exists()


def test_the_budget_page_lists_its_past_periods(alpha):
    budget = alpha.budget
    page = body(signed_in(alpha.members["viewer"]).get(
        reverse("billing:budget", kwargs={"budget_id": budget.pk})))  # fmt: skip
    period = budget.periods.get()
    assert period.spent == Decimal("1.5")
    assert f"{period.starts_at:%Y-%m-%d}" in page and "$1.50" in page


# --- API keys -----------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_works_then_revoking_it_stops_it(alpha, api_client):
    client = signed_in(alpha.members["owner"])
    response = client.post(
        reverse("billing:api-keys"), {"name": "worker", "scopes": ["billing:read"]}
    )
    assert response.status_code == 302  # a reload of the result page creates nothing
    shown = body(client.get(response["Location"]))
    raw = re.search(r'id="new-key">(bp_org_\w+)</code>', shown).group(1)
    key = ApiKey.objects.get(name="worker")
    assert key.scopes == ["billing:read"] and key.created_by == alpha.members["owner"]
    assert key.hash_key(raw) == key.secret_hash
    page = body(client.get(reverse("billing:api-keys")))
    assert raw not in page and key.prefix in page  # never shown again
    assert ApiKey.objects.filter(name="worker").count() == 1

    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert api_client.get("/api/v1/budgets", **auth).status_code == 200
    client.post(reverse("billing:api-key-revoke", kwargs={"key_id": key.pk}))
    assert api_client.get("/api/v1/budgets", **auth).status_code == 401
    assert "revoked" in body(client.get(reverse("billing:api-keys")))


# --- alert channels -----------------------------------------------------------------------


def test_a_test_alert_is_sent_and_its_outcome_shown(alpha):
    client = signed_in(alpha.members["billing"])
    client.post(reverse("billing:channel-test", kwargs={"channel_id": alpha.channel.pk}))
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [alpha.channel.target]
    assert "Test alert" in mail.outbox[0].subject
    page = body(client.get(reverse("billing:channels")))
    assert "sent" in page and "A test alert was sent" in page


def test_a_failing_channel_shows_its_error(alpha):
    channel = NotificationChannel.objects.create(
        organization=alpha.organization, kind="apprise", target="json://127.0.0.1:9/hook"
    )
    client = signed_in(alpha.members["billing"])
    client.post(reverse("billing:channel-test", kwargs={"channel_id": channel.pk}))
    channel.refresh_from_db()
    assert channel.last_tested_at is not None and channel.last_test_error
    assert "failed" in body(client.get(reverse("billing:channels")))


def test_viewers_see_apprise_targets_without_their_secrets(alpha):
    NotificationChannel.objects.create(
        organization=alpha.organization, kind="apprise",
        target="slack://TokenA/TokenB/TokenC/#alerts",
    )  # fmt: skip
    viewer_page = body(signed_in(alpha.members["viewer"]).get(reverse("billing:channels")))
    assert "TokenB" not in viewer_page and "slack://tokena/…" in viewer_page.lower()
    billing_page = body(signed_in(alpha.members["billing"]).get(reverse("billing:channels")))
    assert "TokenB" in billing_page  # who may change it sees it whole


def test_private_addresses_are_refused_as_alert_targets_in_production(alpha, settings):
    settings.ALERT_PRIVATE_TARGETS = False
    client = signed_in(alpha.members["billing"])
    for target in ("json://127.0.0.1:9/hook", "json://169.254.169.254/latest",
                   "json://localhost/x", "json://10.0.0.7/x"):  # fmt: skip
        response = client.post(reverse("billing:channels"), {"kind": "apprise", "target": target})
        assert response.status_code == 400 and "private addresses" in body(response)
    response = client.post(reverse("billing:channels"),
                           {"kind": "apprise", "target": "json://hooks.example.com/x"})  # fmt: skip
    assert response.status_code == 302


def test_a_bad_channel_is_refused(alpha):
    client = signed_in(alpha.members["billing"])
    response = client.post(reverse("billing:channels"), {"kind": "email", "target": "nope"})
    assert response.status_code == 400 and "Not an email address." in body(response)
    response = client.post(reverse("billing:channels"),
                           {"kind": "email", "target": alpha.channel.target})  # fmt: skip
    assert response.status_code == 400 and "already set up" in body(response)


# --- wallet, plans, invoices without Stripe ------------------------------------------------


def test_without_stripe_the_money_pages_say_so_and_change_nothing(alpha, settings):
    settings.STRIPE_ENABLED = False
    client = signed_in(alpha.members["owner"])
    for name in ("billing:wallet", "billing:plans", "billing:invoices"):
        assert "Payments are not configured" in body(client.get(reverse(name)))
    response = client.post(reverse("billing:wallet"), {"amount": "10"}, follow=True)
    assert "top-ups need Stripe" in body(response)


def test_the_wallet_page_shows_the_ledger_and_the_grants(alpha, settings):
    from apps.customers import wallets

    settings.STRIPE_ENABLED = True  # the form is offered, but not to a viewer

    wallets.top_up_wallet(organization=alpha.organization, amount=Decimal("25"), actor="staff",
                          reason="prepaid by bank transfer")  # fmt: skip
    expires_at = timezone.now() + timedelta(days=30)
    wallets.grant_credits(organization=alpha.organization, amount=Decimal(5), reason="welcome",
                          granted_by="staff", expires_at=expires_at)  # fmt: skip
    page = body(signed_in(alpha.members["viewer"]).get(reverse("billing:wallet")))
    assert "prepaid by bank transfer" in page and "$25.00" in page
    assert "welcome" in page and "$5.00" in page
    assert "a billing member or owner can top it up" in page  # a viewer sees no form


# --- with Stripe (the fake on loopback) -----------------------------------------------------


@pytest.fixture
def stripe_plans(fake_stripe):
    plans = seed_catalog()
    call_command("sync_stripe_catalog", stdout=StringIO())
    for plan in plans.values():
        plan.refresh_from_db()
    return plans


@pytest.fixture
def customer_org(stripe_plans):
    from apps.customers import services
    from tests.customers.factories import OrganizationFactory, UserFactory

    organization = OrganizationFactory(slug="stripey", plan=stripe_plans["free"])
    owner = UserFactory(username="stripe-owner")
    services.add_member(organization=organization, user=owner, role="owner")
    return organization, signed_in(owner)


def test_subscribing_goes_through_checkout_then_plan_change_and_cancel_from_the_page(
    client, webhook_endpoint, fake_stripe, stripe_plans, customer_org
):
    organization, page_client = customer_org
    pro, enterprise = stripe_plans["pro"], stripe_plans["enterprise"]
    response = page_client.post(reverse("billing:plan-change"), {"plan": "pro"})
    assert response.status_code == 302
    fake_stripe.complete_checkout(session_id(response["Location"]))
    deliver_processed(client, webhook_endpoint, fake_stripe.events)
    seen = len(fake_stripe.events)
    organization.refresh_from_db()
    assert organization.plan == pro and organization.subscription_status == "trialing"
    page = body(page_client.get(reverse("billing:plans")))
    assert "Switch to Enterprise" in page and "trialing" in page
    overview = body(page_client.get(reverse("billing:overview")))
    assert f"Trial: {pro.trial_days} days left" in overview  # a started day counts
    assert "Renews" in overview

    response = page_client.post(reverse("billing:plan-change"), {"plan": "enterprise"}, follow=True)
    organization.refresh_from_db()
    assert organization.plan == enterprise
    assert "prorated" in body(response)

    page_client.post(reverse("billing:subscription"), {"action": "cancel_at_period_end"})
    deliver_processed(client, webhook_endpoint, fake_stripe.events[seen:])
    assert billing.subscription_summary(organization)["cancel_at_period_end"] is True
    assert "Keep my subscription" in body(page_client.get(reverse("billing:plans")))
    page_client.post(reverse("billing:subscription"), {"action": "resume"})
    assert billing.subscription_summary(organization)["cancel_at_period_end"] is False

    # Cancelling now asks first.
    response = page_client.post(reverse("billing:subscription"), {"action": "cancel_now"})
    assert "Cancel your subscription now?" in body(response)
    assert billing.subscription_summary(organization)["status"] == "trialing"

    response = page_client.post(reverse("billing:subscription"), {"action": "portal"})
    assert response.status_code == 302
    assert response["Location"].startswith("https://billing.stripe.com/p/session/")


def test_a_top_up_from_the_wallet_page_goes_to_checkout_and_credits_once_paid(
    client, webhook_endpoint, fake_stripe, customer_org
):
    organization, page_client = customer_org
    response = page_client.post(reverse("billing:wallet"), {"amount": "20"})
    assert response.status_code == 302
    fake_stripe.complete_checkout(session_id(response["Location"]))
    deliver_processed(client, webhook_endpoint, fake_stripe.events)
    page = body(page_client.get(reverse("billing:wallet")))
    assert "$20.00" in page


def test_a_top_up_below_the_minor_unit_is_refused(customer_org):
    _, page_client = customer_org
    response = page_client.post(reverse("billing:wallet"), {"amount": "10.005"})
    assert response.status_code == 200 and "minor unit" in body(response)


def test_invoices_list_stripe_invoices_with_their_links_and_the_running_statement(
    client, webhook_endpoint, fake_stripe, stripe_plans, customer_org
):
    organization, page_client = customer_org
    response = page_client.post(reverse("billing:plan-change"), {"plan": "pro"})
    session = fake_stripe.complete_checkout(session_id(response["Location"]))
    fake_stripe.end_trial(session["subscription"])
    invoice(fake_stripe, session["subscription"], paid=True)
    deliver_processed(client, webhook_endpoint, fake_stripe.events)
    response = page_client.get(reverse("billing:invoices"))
    page = body(response)
    assert "BP-0001" in page and "https://invoice.stripe.com/i/" in page and "paid" in page
    (shown,) = [i for i in response.context["invoices"] if i["number"] == "BP-0001"]
    data = next(o for o in fake_stripe.objects.values() if o.get("number") == "BP-0001")
    assert shown["total"] == Decimal(data["total"]) / 100  # minor units to dollars
    assert f"${shown['total']:,.2f}" in page
    assert (
        f"{shown['period_start']:%Y-%m-%d}" in page and shown["period_end"] > shown["period_start"]
    )
    assert "Current period so far" in page


# --- sign-in and password reset -----------------------------------------------------------


def test_sign_in_lands_on_the_overview_and_a_wrong_password_is_refused(alpha):
    client = Client()
    user = alpha.members["viewer"]
    response = client.post(reverse("login"), {"username": user.username, "password": "wrong"})
    assert response.status_code == 200 and "did not match" in body(response)
    response = client.post(
        reverse("login"), {"username": user.username, "password": "correct horse battery"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("billing:overview")
    client.post(reverse("logout"))
    assert client.get(reverse("billing:overview")).status_code == 302


def test_a_password_is_reset_by_email(alpha):
    client = Client()
    user = alpha.members["billing"]
    client.post(reverse("password_reset"), {"email": user.email})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    form_url = client.get(link)["Location"]  # Django moves the token into the session
    client.post(form_url, {"new_password1": "a fresh passphrase 42",
                           "new_password2": "a fresh passphrase 42"})  # fmt: skip
    assert client.login(username=user.username, password="a fresh passphrase 42")


# --- the demo -----------------------------------------------------------------------------


def test_the_demo_customer_sees_every_page_with_real_demo_data():
    call_command("seed_demo", stdout=StringIO())
    client = Client()
    assert client.login(username="customer", password="customer-demo-password")
    overview = body(client.get(reverse("billing:overview")))
    assert overview.count("<circle") >= 10  # a spend line with a point a day
    assert overview.count('role="progressbar"') == 3
    usage = body(client.get(reverse("billing:usage")))
    assert usage.count("<rect ") >= 20
    organization = Organization.objects.get(slug="demo")
    for name in ("billing:budgets", "billing:wallet", "billing:plans", "billing:invoices",
                 "billing:api-keys", "billing:channels", "billing:members"):  # fmt: skip
        response = client.get(reverse(name))
        assert response.status_code == 200 and organization.name in body(response)
    assert "Demo Research" in overview  # the switcher
