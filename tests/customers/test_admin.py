import re

import pytest
from django.contrib.auth import get_user_model

from apps.customers import selectors, services
from apps.customers.models import ApiKey, Organization
from tests.customers.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    client.force_login(user)
    return client


def test_creating_a_key_in_the_admin_shows_its_secret_once(staff_client, organization):
    response = staff_client.post(
        "/admin/customers/apikey/add/",
        {"name": "from admin", "kind": "organization", "organization": organization.pk},
        follow=True,
    )

    assert response.status_code == 200
    page = response.content.decode()
    shown = re.search(r"bp_org_[A-Za-z0-9]{8}_[A-Za-z0-9]{40}", page)
    assert shown, "the new key is shown on the page after creation"
    api_key = selectors.api_key_for_raw_key(shown.group(0))
    assert api_key.name == "from admin" and api_key.organization == organization

    again = staff_client.get(f"/admin/customers/apikey/{api_key.pk}/change/").content.decode()
    assert shown.group(0) not in again
    assert api_key.secret_hash not in again
    assert api_key.prefix in again


def test_the_admin_refuses_a_service_key_with_an_organization(staff_client, organization):
    response = staff_client.post(
        "/admin/customers/apikey/add/",
        {"name": "bad", "kind": "service", "organization": organization.pk},
    )

    assert response.status_code == 200
    assert "A service key belongs to no organisation." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_key_list_shows_prefixes_never_hashes(staff_client, organization):
    api_key = services.issue_api_key(name="listed", organization=organization).api_key

    page = staff_client.get("/admin/customers/apikey/").content.decode()

    assert api_key.prefix in page
    assert api_key.secret_hash not in page


def test_the_revoke_action_revokes_the_selected_keys(staff_client, organization):
    keep = services.issue_api_key(name="keep", organization=organization).api_key
    drop = services.issue_api_key(name="drop", organization=organization).api_key

    staff_client.post(
        "/admin/customers/apikey/",
        {"action": "revoke", "_selected_action": [drop.pk]},
    )

    drop.refresh_from_db()
    keep.refresh_from_db()
    assert drop.revoked_at is not None
    assert keep.revoked_at is None


def test_keys_cannot_be_deleted_from_the_admin(staff_client, organization):
    api_key = services.issue_api_key(name="x", organization=organization).api_key

    response = staff_client.post(f"/admin/customers/apikey/{api_key.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert ApiKey.objects.filter(pk=api_key.pk).exists()


def test_the_organization_page_lists_members_and_keys(staff_client, organization):
    services.issue_api_key(name="inline key", organization=organization)

    page = staff_client.get(f"/admin/customers/organization/{organization.pk}/change/")

    assert page.status_code == 200
    assert "inline key" in page.content.decode()


def test_suspend_and_reactivate_actions_ask_for_a_reason_and_record_it(staff_client):
    organization = OrganizationFactory()
    selection = {"action": "suspend", "_selected_action": [organization.pk]}

    page = staff_client.post("/admin/customers/organization/", selection)
    assert b"reason" in page.content  # the confirmation page
    organization.refresh_from_db()
    assert organization.status == Organization.Status.ACTIVE

    staff_client.post(
        "/admin/customers/organization/", {**selection, "apply": "1", "reason": "unpaid since May"}
    )
    organization.refresh_from_db()
    assert organization.status == Organization.Status.SUSPENDED

    staff_client.post(
        "/admin/customers/organization/",
        {"action": "reactivate", "_selected_action": [organization.pk], "apply": "1",
         "reason": "paid in full"},
    )  # fmt: skip
    organization.refresh_from_db()
    assert organization.status == Organization.Status.ACTIVE
    history = staff_client.get(f"/admin/customers/organization/{organization.pk}/history/")
    assert b"unpaid since May" in history.content and b"paid in full" in history.content


def test_the_organization_page_links_its_stripe_customer_subscription_and_invoices(
    staff_client, organization, fake_stripe
):
    from io import StringIO

    from django.core.management import call_command

    from apps.customers import billing
    from apps.pricing.demo import seed_catalog
    from apps.pricing.models import Plan
    from tests.fake_stripe import invoice
    from tests.stripe_webhooks import CHECKOUT_URLS, session_id

    seed_catalog()
    call_command("sync_stripe_catalog", stdout=StringIO())
    plan = Plan.objects.get(code="pro")
    session = fake_stripe.complete_checkout(
        session_id(billing.checkout_subscription(organization, plan, **CHECKOUT_URLS))
    )
    billing.follow_subscription(organization, session["subscription"])
    paid = invoice(fake_stripe, session["subscription"], paid=True)
    billing.reconcile()  # brings the invoice into dj-stripe's tables

    page = staff_client.get(f"/admin/customers/organization/{organization.pk}/change/")

    html = page.content.decode()
    customer = billing.customer_of(organization)
    assert f"/admin/djstripe/customer/{customer.pk}/change/" in html
    assert session["subscription"] in html and paid["id"] in html
    assert f"/test/customers/{customer.id}" in html  # its page in Stripe's dashboard
