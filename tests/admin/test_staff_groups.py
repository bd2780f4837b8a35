"""The staff groups (finance, support, read-only) and the admin actions: each action asks
for a reason, adds entries (never edits a ledger) and shows in the object's history."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.test import Client
from django.utils import timezone

from apps.budgets.models import Alert, AlertDelivery, Budget, BudgetPeriod, NotificationChannel
from apps.core import staff
from apps.customers import wallets
from apps.customers.models import CreditGrant, Wallet, WalletEntry
from apps.usage.ingestion import EventInput, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups(db):
    staff.apply(Group, Permission)


def member_of(group_name: str) -> Client:
    user = get_user_model().objects.create_user(
        f"{group_name}-staff", f"{group_name}@example.com", "pw-staff-12345", is_staff=True
    )
    user.groups.add(Group.objects.get(name=group_name))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(org, calls):
    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    outcome = ingest(
        organization=org,
        events=[EventInput(idempotency_key="e1", product_id="calls", fingerprint="f",
                           usage_amount=D(100))],
    )[0]  # fmt: skip
    budget = Budget.objects.create(
        organization=org, name="cap", limit=D(2), currency="USD", thresholds=[50]
    )
    period = BudgetPeriod.objects.create(
        budget=budget, starts_at=timezone.now() - timedelta(days=1), spent=D("1.5")
    )
    alert = Alert.objects.create(period=period, threshold=50, spent=D("1.5"), limit=D(2))
    NotificationChannel.objects.create(organization=org, kind="email", target="ops@example.com")
    return {
        "record": outcome.record,
        "wallet": Wallet.objects.get(organization=org),
        "period": period,
        "alert": alert,
        "org": org,
    }


def act(client, url: str, action: str, pk, **data):
    return client.post(
        url, {"action": action, "_selected_action": [pk], "apply": "1", "reason": "ticket 42",
              **data},
    )  # fmt: skip


def history(client, url: str, pk) -> str:
    return client.get(f"{url}{pk}/history/").content.decode()


# --- each action ------------------------------------------------------------------------------


def test_refund_adds_a_billing_event_with_the_reason_and_shows_in_history(groups, world):
    client, url = member_of(staff.FINANCE), "/admin/usage/billingrecord/"
    record = world["record"]
    act(client, url, "refund", record.pk)
    record.refresh_from_db()
    assert record.status == "refunded"
    assert record.events.order_by("pk").last().reason == "ticket 42"
    assert "ticket 42" in history(client, url, record.pk)


def test_top_up_and_grant_add_ledger_entries_with_the_reason(groups, world):
    client, url = member_of(staff.FINANCE), "/admin/customers/wallet/"
    wallet = world["wallet"]
    before = WalletEntry.objects.count()
    act(client, url, "top_up", wallet.pk, amount="25", reference="wire-1")
    assert WalletEntry.objects.count() == before + 1
    assert WalletEntry.objects.latest("pk").reason == "ticket 42"
    act(client, url, "grant_credits", wallet.pk, amount="5", expires_at="")
    assert CreditGrant.objects.get(reason="ticket 42").amount == D(5)
    page = history(client, url, wallet.pk)
    assert page.count("ticket 42") == 2 and "amount: 25" in page


def test_reset_a_budget_period(groups, world):
    client, url = member_of(staff.SUPPORT), "/admin/budgets/budgetperiod/"
    period = world["period"]
    act(client, url, "reset", period.pk)
    period.refresh_from_db()
    assert period.spent == 0
    assert "ticket 42" in history(client, url, period.pk)


def test_resend_an_alert(groups, world):
    client, url = member_of(staff.SUPPORT), "/admin/budgets/alert/"
    alert = world["alert"]
    act(client, url, "resend", alert.pk)
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]
    assert AlertDelivery.objects.get(alert=alert).status == "sent"
    act(client, url, "resend", alert.pk)  # a sent alert can be sent again
    assert len(mail.outbox) == 2
    assert "ticket 42" in history(client, url, alert.pk)


def test_export_the_selection_as_csv(groups, world):
    client = member_of(staff.READ_ONLY)
    response = client.post(
        "/admin/usage/billingrecord/",
        {"action": "export_as_csv", "_selected_action": [world["record"].pk]},
    )
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("id,billing_id,event_id")
    assert len(lines) == 2 and world["record"].billing_id in lines[1]


def test_resync_an_organization_from_stripe(groups, world, fake_stripe):
    from apps.customers import billing

    org = world["org"]
    billing.ensure_customer(org)
    client, url = member_of(staff.FINANCE), "/admin/customers/organization/"
    response = act(client, url, "resync", org.pk)
    assert response.status_code == 302
    assert "ticket 42" in history(client, url, org.pk)


# --- what each group may do -----------------------------------------------------------------


ACTIONS = {
    "/admin/usage/billingrecord/": "refund",
    "/admin/customers/wallet/": "top_up",
    "/admin/budgets/budgetperiod/": "reset",
    "/admin/budgets/alert/": "resend",
    "/admin/customers/organization/": "suspend",
}
MAY = {
    staff.FINANCE: {"refund", "top_up", "reset", "resend", "suspend"},
    staff.SUPPORT: {"reset", "resend"},
    staff.READ_ONLY: set(),
}


@pytest.mark.parametrize("group", [staff.FINANCE, staff.SUPPORT, staff.READ_ONLY])
def test_each_group_sees_the_actions_it_may_use_and_no_other(groups, world, group):
    client = member_of(group)
    for url, action in ACTIONS.items():
        page = client.get(url)
        assert page.status_code == 200, url  # every group reads every list
        offered = f'value="{action}"' in page.content.decode()
        assert offered == (action in MAY[group]), (group, action)


@pytest.mark.parametrize("group", [staff.SUPPORT, staff.READ_ONLY])
def test_a_group_without_the_right_cannot_refund_by_posting_the_action(groups, world, group):
    client = member_of(group)
    act(client, "/admin/usage/billingrecord/", "refund", world["record"].pk)
    world["record"].refresh_from_db()
    assert world["record"].status == "completed"


@pytest.mark.parametrize(
    ("group", "may_change_prices", "may_change_budgets"),
    [(staff.FINANCE, True, True), (staff.SUPPORT, False, True), (staff.READ_ONLY, False, False)],
)
def test_prices_are_finance_only_and_budgets_also_support(
    groups, world, group, may_change_prices, may_change_budgets, calls
):
    from apps.pricing.models import PriceRule

    client = member_of(group)
    rule = PriceRule.objects.filter(product=calls).first()
    price_page = client.get(f"/admin/pricing/pricerule/{rule.pk}/change/")
    assert price_page.status_code == 200  # every group may read it
    assert ('name="_save"' in price_page.content.decode()) == may_change_prices
    budget = Budget.objects.get(name="cap")
    budget_page = client.get(f"/admin/budgets/budget/{budget.pk}/change/")
    assert ('name="_save"' in budget_page.content.decode()) == may_change_budgets


def test_the_groups_are_applied_exactly_and_idempotently(groups):
    staff.apply(Group, Permission)
    finance = set(
        Group.objects.get(name=staff.FINANCE).permissions.values_list("codename", flat=True)
    )
    support = set(
        Group.objects.get(name=staff.SUPPORT).permissions.values_list("codename", flat=True)
    )
    read_only = set(
        Group.objects.get(name=staff.READ_ONLY).permissions.values_list("codename", flat=True)
    )
    assert {"refund_billingrecord", "change_pricerule", "grant_credits"} <= finance
    assert not {"refund_billingrecord", "change_pricerule", "top_up_wallet"} & support
    assert {"resend_alert", "reset_budgetperiod", "change_budget"} <= support
    assert all(codename.startswith("view_") for codename in read_only)
    assert (
        Group.objects.filter(name__in=[staff.FINANCE, staff.SUPPORT, staff.READ_ONLY]).count() == 3
    )


# --- what no group may do ---------------------------------------------------------------------


@pytest.mark.parametrize("group", [staff.FINANCE, staff.SUPPORT, staff.READ_ONLY])
def test_no_group_runs_dj_stripes_own_actions(groups, group):
    client = member_of(group)
    url = "/admin/djstripe/customer/action/_sync_all_instances/customer/"
    assert client.post(url, {"_selected_action": ["_sync_all_instances"]}).status_code == 403
    assert client.get("/admin/djstripe/customer/").status_code == 200  # reading is fine


@pytest.mark.parametrize(("group", "may"), [(staff.FINANCE, True), (staff.SUPPORT, False),
                                            (staff.READ_ONLY, False)])  # fmt: skip
def test_only_finance_imports_price_rules(groups, group, may):
    response = member_of(group).get("/admin/pricing/pricerule/import/")
    assert (response.status_code == 200) == may


def test_finance_manages_money_not_access_and_never_deletes_the_catalog(groups, plan):
    client = member_of(staff.FINANCE)
    assert client.get("/admin/customers/apikey/add/").status_code == 403
    assert client.get("/admin/customers/membership/add/").status_code == 403
    assert client.get(f"/admin/pricing/plan/{plan.pk}/delete/").status_code == 403
    assert client.get("/admin/pricing/plan/add/").status_code == 200


def test_the_csv_export_is_not_offered_where_rows_hold_secrets(groups, world):
    client = member_of(staff.FINANCE)
    assert 'value="export_as_csv"' in client.get("/admin/usage/billingrecord/").content.decode()
    for url in ("/admin/customers/apikey/", "/admin/budgets/notificationchannel/"):
        assert 'value="export_as_csv"' not in client.get(url).content.decode(), url
