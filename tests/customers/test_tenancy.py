"""An organisation key only ever sees and acts for its own organisation."""

import pytest
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.customers import services
from apps.customers.api.authentication import ApiKeyAuthentication
from apps.customers.api.tenancy import organization_for_request
from apps.customers.errors import OrganizationNotFound, OrganizationSuspended
from apps.customers.models import Organization
from tests.customers.factories import OrganizationFactory
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

ORGANIZATION = "/api/v1/organization"


def test_an_organization_key_reads_its_own_organization(api_client, organization, org_key):
    response = api_client.get(ORGANIZATION, **bearer(org_key))

    assert response.status_code == 200
    assert response.json()["organization_id"] == organization.slug


def test_an_organization_key_cannot_read_another_organization(api_client, org_key):
    other = OrganizationFactory(name="Other Corp")

    response = api_client.get(ORGANIZATION, {"organization_id": other.slug}, **bearer(org_key))

    assert response.status_code == 404
    assert error_code(response) == "organization_not_found"
    assert "Other Corp" not in response.content.decode()


def test_another_organization_answers_exactly_like_an_unknown_one(api_client, org_key):
    other = OrganizationFactory()

    taken = api_client.get(ORGANIZATION, {"organization_id": other.slug}, **bearer(org_key))
    unknown = api_client.get(ORGANIZATION, {"organization_id": "no-such-org"}, **bearer(org_key))

    assert taken.status_code == unknown.status_code == 404
    taken_body, unknown_body = taken.json(), unknown.json()
    taken_body["error"]["details"].pop("organization_id")
    unknown_body["error"]["details"].pop("organization_id")
    assert taken_body == unknown_body


def test_an_organization_key_cannot_act_for_another_organization_in_a_body(org_key):
    other = OrganizationFactory()
    django_request = APIRequestFactory().post(
        "/api/v1/anything", {"organization_id": other.slug}, format="json", **bearer(org_key)
    )
    request = Request(
        django_request, parsers=[JSONParser()], authenticators=[ApiKeyAuthentication()]
    )

    with pytest.raises(OrganizationNotFound):
        organization_for_request(request)


def test_a_service_key_acts_for_the_organization_it_names(api_client, service_key):
    target = OrganizationFactory()

    response = api_client.get(ORGANIZATION, {"organization_id": target.slug}, **bearer(service_key))

    assert response.status_code == 200
    assert response.json()["organization_id"] == target.slug


def test_a_service_key_must_name_an_organization(api_client, service_key):
    response = api_client.get(ORGANIZATION, **bearer(service_key))

    assert response.status_code == 400
    assert error_code(response) == "organization_required"


def test_a_service_key_naming_an_unknown_organization_is_404(api_client, service_key):
    response = api_client.get(ORGANIZATION, {"organization_id": "ghost"}, **bearer(service_key))

    assert response.status_code == 404
    assert error_code(response) == "organization_not_found"


def test_a_suspended_organization_cannot_be_acted_for(rf, organization, org_key):
    services.set_organization_status(
        organization=organization, status=Organization.Status.SUSPENDED
    )
    request = Request(
        rf.get("/api/v1/x", **bearer(org_key)), authenticators=[ApiKeyAuthentication()]
    )

    with pytest.raises(OrganizationSuspended):
        organization_for_request(request)
    assert organization_for_request(request, allow_suspended=True) == organization
