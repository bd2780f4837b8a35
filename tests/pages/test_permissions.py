"""Every page and form: sign-in, roles, tenants and CSRF."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.budgets.models import Budget, NotificationChannel
from apps.customers.models import ApiKey, Membership
from tests.customers.factories import UserFactory
from tests.pages.conftest import ROLES, signed_in

pytestmark = pytest.mark.django_db

PAGES = [
    ("billing:overview", None),
    ("billing:usage", None),
    ("billing:budgets", None),
    ("billing:budget-new", None),
    ("billing:budget", "budget"),
    ("billing:budget-edit", "budget"),
    ("billing:budget-delete", "budget"),
    ("billing:wallet", None),
    ("billing:plans", None),
    ("billing:invoices", None),
    ("billing:statements", None),
    ("billing:api-keys", None),
    ("billing:channels", None),
    ("billing:members", None),
]


def url_of(name, target, tenant):
    if target == "budget":
        return reverse(name, kwargs={"budget_id": tenant.budget.pk})
    return reverse(name)


# Each form: (url name, object it acts on, POST data, least role, what it changed).
def _writes(tenant, other_user):
    budget, key, channel = tenant.budget, tenant.api_key, tenant.channel
    viewer = Membership.objects.get(organization=tenant.organization, role="viewer")
    return [
        ("billing:budget-new", {}, {"name": "New cap", "scope": "all", "period": "monthly",
         "limit": "20", "thresholds": "80, 100", "is_hard": "on", "is_active": "on"}, "billing",
         lambda: Budget.objects.filter(name="New cap").exists()),
        ("billing:budget-edit", {"budget_id": budget.pk}, {"name": budget.name, "scope": "all",
         "period": "monthly", "limit": "75", "thresholds": "50, 100", "is_active": "on"},
         "billing", lambda: Budget.objects.get(pk=budget.pk).limit == 75),
        ("billing:budget-toggle", {"budget_id": budget.pk}, {}, "billing",
         lambda: not Budget.objects.get(pk=budget.pk).is_active),
        ("billing:budget-delete", {"budget_id": budget.pk}, {}, "billing",
         lambda: not Budget.objects.filter(pk=budget.pk).exists()),
        ("billing:channels", {}, {"kind": "email", "target": "new@example.com"}, "billing",
         lambda: NotificationChannel.objects.filter(target="new@example.com").exists()),
        ("billing:channel-test", {"channel_id": channel.pk}, {}, "billing",
         lambda: NotificationChannel.objects.get(pk=channel.pk).last_tested_at is not None),
        ("billing:channel-delete", {"channel_id": channel.pk}, {}, "billing",
         lambda: not NotificationChannel.objects.filter(pk=channel.pk).exists()),
        ("billing:api-keys", {}, {"name": "ci", "scopes": ["usage:write"]}, "owner",
         lambda: ApiKey.objects.filter(name="ci").exists()),
        ("billing:api-key-revoke", {"key_id": key.pk}, {}, "owner",
         lambda: ApiKey.objects.get(pk=key.pk).revoked_at is not None),
        ("billing:members", {}, {"email": other_user.email, "role": "viewer"}, "owner",
         lambda: Membership.objects.filter(user=other_user).exists()),
        ("billing:member-change", {"membership_id": viewer.pk}, {"role": "billing"}, "owner",
         lambda: Membership.objects.get(pk=viewer.pk).role == "billing"),
    ]  # fmt: skip


RANK = {"viewer": 0, "billing": 1, "admin": 2, "owner": 3}
WRITE_NAMES = [
    "budget-new", "budget-edit", "budget-toggle", "budget-delete", "channels", "channel-test",
    "channel-delete", "api-keys", "api-key-revoke", "members", "member-change",
]  # fmt: skip


@pytest.mark.parametrize(("name", "target"), PAGES)
def test_every_page_asks_an_anonymous_visitor_to_sign_in(client, alpha, name, target):
    url = url_of(name, target, alpha)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


# Pages that are forms only: a viewer, who may not submit them, is not shown them either.
FORM_PAGES = {"billing:budget-new", "billing:budget-edit", "billing:budget-delete"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "target"), PAGES)
def test_every_role_reads_every_page_of_its_organization(as_role, alpha, beta, role, name, target):
    response = as_role(role).get(url_of(name, target, alpha))
    if role == "viewer" and name in FORM_PAGES:
        assert response.status_code == 403
        return
    assert response.status_code == 200
    body = response.content.decode()
    assert alpha.organization.name in body
    # Nothing of the other organisation shows on any page.
    assert beta.organization.name not in body
    assert "beta-user" not in body and beta.budget.name not in body
    assert beta.api_key.prefix not in body and beta.channel.target not in body


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("write", WRITE_NAMES)
def test_each_form_is_open_to_the_roles_that_may_use_it_and_refused_to_the_others(
    alpha, role, write
):
    other_user = UserFactory(username="newcomer")
    name, kwargs, data, least, changed = next(
        w for w in _writes(alpha, other_user) if w[0] == f"billing:{write}"
    )
    response = signed_in(alpha.members[role]).post(reverse(name, kwargs=kwargs), data)
    if RANK[role] >= RANK[least]:
        assert response.status_code in (200, 201, 302), response.content[:500]
        assert changed(), f"{role} could not {write}"
    else:
        assert response.status_code == 403
        assert not changed(), f"{role} changed {write} without the right"


# The forms that name an object in their URL (the others act on the current organisation).
WRITES_WITH_IDS = [
    "budget-edit", "budget-toggle", "budget-delete", "channel-test", "channel-delete",
    "api-key-revoke", "member-change",
]  # fmt: skip


@pytest.mark.parametrize("write", WRITES_WITH_IDS)
def test_another_organizations_objects_are_not_found_by_changing_an_id(alpha, beta, write):
    """An owner of alpha, posting with beta's ids, gets 404 and beta is unchanged."""
    other_user = UserFactory(username="newcomer")
    name, kwargs, data, _, changed = next(
        w for w in _writes(beta, other_user) if w[0] == f"billing:{write}"
    )
    response = signed_in(alpha.members["owner"]).post(reverse(name, kwargs=kwargs), data)
    assert response.status_code == 404
    assert not changed()


@pytest.mark.parametrize(
    ("name", "data"),
    [("billing:wallet", {"amount": "10"}), ("billing:plan-change", {"plan": "pro"}),
     ("billing:subscription", {"action": "cancel_now", "confirm": "yes"}),
     ("billing:subscription", {"action": "portal"})],
)  # fmt: skip
def test_a_viewer_cannot_pay_change_plan_or_cancel(alpha, settings, name, data):
    settings.STRIPE_ENABLED = True  # refused by role, before anything reaches Stripe
    assert signed_in(alpha.members["viewer"]).post(reverse(name), data).status_code == 403


def test_pages_of_another_organizations_budget_are_not_found(alpha, beta):
    client = signed_in(alpha.members["owner"])
    for name in ("billing:budget", "billing:budget-edit", "billing:budget-delete"):
        assert client.get(reverse(name, kwargs={"budget_id": beta.budget.pk})).status_code == 404


def test_switching_to_an_organization_one_is_not_a_member_of_is_not_found(alpha, beta):
    client = signed_in(alpha.members["owner"])
    response = client.post(reverse("billing:switch"), {"organization": beta.organization.pk})
    assert response.status_code == 404
    assert alpha.organization.name in client.get(reverse("billing:overview")).content.decode()


def test_the_switcher_moves_a_member_of_two_organizations_between_them(alpha, beta):
    user = alpha.members["billing"]
    Membership.objects.create(user=user, organization=beta.organization, role="viewer")
    client = signed_in(user)
    page = client.get(reverse("billing:overview")).content.decode()
    assert 'name="organization"' in page and beta.organization.name in page  # the switcher

    client.post(reverse("billing:switch"), {"organization": beta.organization.pk})
    page = client.get(reverse("billing:budgets")).content.decode()
    assert beta.budget.name in page and alpha.budget.name not in page
    # The role is the one held in beta: a viewer there.
    response = client.post(reverse("billing:budget-toggle", kwargs={"budget_id": beta.budget.pk}))
    assert response.status_code == 403


def test_a_user_of_no_organization_is_told_so(db):
    client = signed_in(UserFactory(username="loner"))
    response = client.get(reverse("billing:overview"))
    assert response.status_code == 403
    assert "not a member of any organisation" in response.content.decode()


def test_the_last_owner_cannot_be_demoted_or_removed(alpha):
    client = signed_in(alpha.members["owner"])
    owner = Membership.objects.get(user=alpha.members["owner"])
    client.post(reverse("billing:member-change", kwargs={"membership_id": owner.pk}),
                {"role": "viewer"})  # fmt: skip
    client.post(reverse("billing:member-change", kwargs={"membership_id": owner.pk}),
                {"action": "remove"})  # fmt: skip
    assert Membership.objects.get(pk=owner.pk).role == "owner"


# --- CSRF ---------------------------------------------------------------------------------

FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", re.S | re.I)


@pytest.mark.parametrize(("name", "target"), PAGES)
def test_every_form_on_every_page_carries_a_csrf_token(alpha, name, target):
    body = signed_in(alpha.members["owner"]).get(url_of(name, target, alpha)).content.decode()
    forms = FORM.findall(body)
    assert forms, "every page has at least the sign-out form"
    for form in forms:
        assert 'name="csrfmiddlewaretoken"' in form


@pytest.mark.parametrize("write", [*WRITE_NAMES, "switch", "wallet", "plan-change", "subscription"])
def test_every_form_refuses_a_post_without_the_csrf_token(alpha, write):
    client = signed_in(alpha.members["owner"], enforce_csrf_checks=True)
    other_user = UserFactory(username="newcomer")
    extra = {"billing:switch": ({}, {}), "billing:wallet": ({}, {"amount": "10"}),
             "billing:plan-change": ({}, {"plan": "x"}),
             "billing:subscription": ({}, {"action": "portal"})}  # fmt: skip
    found = [w for w in _writes(alpha, other_user) if w[0] == f"billing:{write}"]
    if found:
        name, kwargs, data, _, changed = found[0]
    else:
        name = f"billing:{write}"
        (kwargs, data), changed = extra[name], None
    response = client.post(reverse(name, kwargs=kwargs), data)
    assert response.status_code == 403
    if changed is not None:
        assert not changed()


def test_signing_out_needs_a_post_with_the_token(alpha):
    client = signed_in(alpha.members["viewer"], enforce_csrf_checks=True)
    assert client.post(reverse("logout")).status_code == 403
    assert client.get(reverse("billing:overview")).status_code == 200
    anonymous = Client()
    assert anonymous.get(reverse("billing:overview")).status_code == 302
