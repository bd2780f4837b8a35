"""What each page shows and does, with the data behind it."""

import csv
import io
import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.budgets.models import Budget, NotificationChannel
from apps.customers import billing, services
from apps.customers.models import ApiKey, Organization
from apps.customers.templatetags.billing import money
from apps.pricing.demo import seed_catalog
from apps.pricing.periods import local_day
from apps.usage import ingestion
from apps.usage.models import DailyUsage
from apps.usage.selectors import forecast
from tests.clock import MID_MONTH, travel
from tests.customers.factories import OrganizationFactory, UserFactory
from tests.fake_stripe import invoice
from tests.pages.conftest import make_tenant, signed_in
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


def _period_days(organization):
    """The local days of the organisation's billing period that holds now, up to today."""
    start, end = billing.billing_period(organization, timezone.now())
    tz = organization.tz
    first, today = local_day(start, tz), local_day(timezone.now(), tz)
    last = local_day(end - timedelta(microseconds=1), tz)
    return first, today, last


def test_the_overview_shows_plan_spend_forecast_budgets_wallet_and_alerts(alpha):
    # The tenants' usage was recorded 3 days ago, yesterday and today: in this period or,
    # early in a month, partly in the last one. Every figure is checked against the period
    # it actually falls in.
    response = signed_in(alpha.members["viewer"]).get(reverse("billing:overview"))
    page = body(response)
    first, today, last = _period_days(alpha.organization)
    by_day = dict(DailyUsage.objects.filter(organization=alpha.organization)
                  .values_list("day", "cost"))  # fmt: skip
    assert sum(by_day.values(), Decimal(0)) == Decimal("1.5")  # 15 events of 10 calls at $0.01
    period_spent = sum((cost for day, cost in by_day.items() if day >= first), Decimal(0))
    assert response.context["spent"] == period_spent
    assert money(period_spent, "USD") in page
    assert alpha.organization.plan.name in page
    assert "Forecast at period end" in page
    # spent + (the average of the last full days, at most 7, from the first day with
    # usage, whatever period they are in) x the days left after today
    full = [today - timedelta(days=n) for n in range(3, 0, -1)]  # usage began 3 days ago
    rate = sum((by_day.get(day, Decimal(0)) for day in full), Decimal(0)) / 3
    days_left = (last - today).days
    assert response.context["forecast"] == period_spent + rate * days_left
    if days_left:
        assert "the average of the last 3 full days" in page
    assert page.count("<circle") >= 1  # the spend line has points
    assert 'role="progressbar"' in page and alpha.budget.name in page
    assert "Wallet and credits" in page


def _spend(organization, calls, day_costs: dict, *, prefix: str) -> None:
    """Records usage of ``calls`` ($0.01 a call) costing ``day_costs[day]`` on each day, at
    noon of the organisation's zone."""
    events = []
    for day, cost in day_costs.items():
        at = datetime.combine(day, time(12), tzinfo=organization.tz)
        events.append(ingestion.EventInput(
            idempotency_key=f"{prefix}-{day}", product_id=calls.code,
            fingerprint=f"{prefix}-{day}", usage_amount=cost * 100, occurred_at=at))  # fmt: skip
    outcomes = ingestion.ingest(organization=organization, events=events)
    assert all(o.status == o.ACCEPTED for o in outcomes), [o.error for o in outcomes]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_on_the_second_of_a_month_the_forecast_rests_on_the_last_seven_full_days(zone, plan, calls):
    organization = OrganizationFactory(slug="early", plan=plan, time_zone=zone)
    user = UserFactory(username="early-viewer")
    services.add_member(organization=organization, user=user, role="viewer")
    with travel("2026-12-02 10:00", zone):
        # $1 a day through November's last ten days, $5 on December 1st, $2 so far today.
        days = {date(2026, 11, 21) + timedelta(days=n): Decimal(1) for n in range(10)}
        days[date(2026, 12, 1)], days[date(2026, 12, 2)] = Decimal(5), Decimal(2)
        _spend(organization, calls, days, prefix="early")
        response = signed_in(user).get(reverse("billing:overview"))
    page = body(response)
    # This period: Dec 1 and today, $7. The rate: Nov 25 to Dec 1 = (6 x $1 + $5) / 7.
    assert response.context["spent"] == Decimal(7)
    rate = Decimal(11) / 7
    assert response.context["forecast"] == Decimal(7) + rate * 29  # Dec 3 to Dec 31
    assert response.context["outlook"].basis_start == date(2026, 11, 25)
    assert "the average of the last 7 full days (Nov 25 – Dec 1)" in page
    assert f"At {money(rate, 'USD')} a day" in page


def test_on_its_first_day_of_usage_the_forecast_uses_today_so_far(plan, calls):
    organization = OrganizationFactory(slug="fresh", plan=plan)
    user = UserFactory(username="fresh-viewer")
    services.add_member(organization=organization, user=user, role="viewer")
    with travel("2027-01-31 22:30", "UTC"):  # the last day: nothing left to forecast
        _spend(organization, calls, {date(2027, 1, 31): Decimal(3)}, prefix="last")
        response = signed_in(user).get(reverse("billing:overview"))
        assert response.context["forecast"] == Decimal(3)
        assert "The period ends today" in body(response)
    with travel("2027-02-10 09:00", "UTC"):
        other = OrganizationFactory(slug="fresher", plan=plan)
        services.add_member(organization=other, user=user, role="viewer")
        _spend(other, calls, {date(2027, 2, 10): Decimal(2)}, prefix="first")
        client = signed_in(user)
        client.post(reverse("billing:switch"), {"organization": other.pk})
        response = client.get(reverse("billing:overview"))
    assert response.context["organization"] == other
    assert response.context["forecast"] == Decimal(2) + Decimal(2) * 18  # Feb 11 to 28
    assert "no full day of usage yet" in body(response)


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
    # Usage 3 days ago falls in last month's period early in a month: each period holds
    # what was used in it, and the page lists them all.
    periods = list(budget.periods.order_by("starts_at"))
    assert 1 <= len(periods) <= 2
    assert sum((period.spent for period in periods), Decimal(0)) == Decimal("1.5")
    tz = alpha.organization.tz
    for period in periods:
        days = DailyUsage.objects.filter(
            organization=alpha.organization,
            day__gte=local_day(period.starts_at, tz),
            day__lt=local_day(period.ends_at, tz),
        )
        used = sum(days.values_list("cost", flat=True), Decimal(0))
        assert period.spent == used
        assert f"{period.starts_at:%Y-%m-%d}" in page and money(period.spent, "USD") in page


def test_a_budget_page_early_in_a_month_shows_this_period_and_last(plan, calls):
    with travel("2026-12-01 00:30", "UTC"):
        tenant = make_tenant("edge", plan, calls, "edge-user")
        page = body(signed_in(tenant.members["viewer"]).get(
            reverse("billing:budget", kwargs={"budget_id": tenant.budget.pk})))  # fmt: skip
    november, december = tenant.budget.periods.order_by("starts_at")
    assert (november.starts_at.date(), december.starts_at.date()) == (
        date(2026, 11, 1), date(2026, 12, 1))  # fmt: skip
    assert (november.spent, december.spent) == (Decimal("1.0"), Decimal("0.5"))
    assert "2026-11-01" in page and "2026-12-01" in page and "$0.50" in page


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
    assert (
        client.post(
            reverse("login"), {"username": user.username, "password": "a fresh passphrase 42"}
        ).status_code
        == 302
    )


# --- the demo -----------------------------------------------------------------------------


def test_the_demo_customer_sees_every_page_with_real_demo_data():
    with travel(MID_MONTH):  # four weeks of usage: 20 days of them this month
        call_command("seed_demo", stdout=StringIO())
        client = Client()
        assert (
            client.post(
                reverse("login"), {"username": "customer", "password": "customer-demo-password"}
            ).status_code
            == 302
        )
        _demo_pages_are_full(client)


def _demo_pages_are_full(client):
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


def test_the_demo_seeded_in_the_first_hour_of_a_month_has_last_months_statement_and_a_forecast():
    with travel("2026-12-01 00:30", "UTC"):  # 01:30 on the 1st in Berlin, the demo's zone
        call_command("seed_demo", stdout=StringIO())
        client = Client()
        assert (
            client.post(
                reverse("login"), {"username": "customer", "password": "customer-demo-password"}
            ).status_code
            == 302
        )
        response = client.get(reverse("billing:overview"))
        overview = body(response)
        statements = body(client.get(reverse("billing:statements")))
    outlook = response.context["outlook"]
    assert (outlook.days, outlook.basis_start, outlook.basis_end) == (
        7, date(2026, 11, 24), date(2026, 11, 30))  # fmt: skip
    assert outlook.daily_rate > 0 and response.context["forecast"] > response.context["spent"]
    assert "the average of the last 7 full days (Nov 24 – Nov 30)" in overview
    assert overview.count('role="progressbar"') == 3
    assert "Nov 1, 2026" in statements or "2026-11-01" in statements
