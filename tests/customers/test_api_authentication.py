import pytest

from apps.customers import services
from apps.customers.models import ApiKey
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db

INFO = "/api/v1/info"


def test_a_bearer_key_is_accepted(api_client, org_key, organization):
    response = api_client.get(INFO, **bearer(org_key))

    assert response.status_code == 200
    assert response.json()["caller"]["organization_id"] == organization.slug


def test_an_x_api_key_header_is_accepted(api_client, org_key):
    response = api_client.get(INFO, HTTP_X_API_KEY=org_key)

    assert response.status_code == 200
    assert response.json()["caller"]["key_prefix"] == org_key.rsplit("_", 1)[0]


def test_a_missing_key_is_401_not_authenticated(api_client):
    response = api_client.get(INFO)

    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_key_is_401_invalid_api_key(api_client, org_key):
    wrong = org_key[:-4] + "zzzz"
    response = api_client.get(INFO, **bearer(wrong))

    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_a_revoked_key_is_401_api_key_revoked(api_client, org_key):
    api_key = ApiKey.objects.get(prefix=ApiKey.prefix_of(org_key))
    services.revoke_api_key(api_key=api_key)

    response = api_client.get(INFO, **bearer(org_key))

    assert response.status_code == 401
    assert error_code(response) == "api_key_revoked"


def test_another_authorization_scheme_is_401_malformed_credentials(api_client, org_key):
    response = api_client.get(INFO, HTTP_AUTHORIZATION=f"Basic {org_key}")

    assert response.status_code == 401
    assert error_code(response) == "malformed_credentials"


def test_using_a_key_records_its_last_use(api_client, org_key):
    api_client.get(INFO, **bearer(org_key))

    assert ApiKey.objects.get(prefix=ApiKey.prefix_of(org_key)).last_used_at is not None


def test_a_key_never_opens_the_admin(client, org_key):
    response = client.get("/admin/", **bearer(org_key))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_key_without_the_scope_is_403(api_client, organization):
    raw = services.issue_api_key(
        name="writer", organization=organization, scopes=["usage:write"]
    ).raw_key

    response = api_client.get("/api/v1/organization", **bearer(raw))

    assert response.status_code == 403
    assert error_code(response) == "permission_denied"


# Keys are kept in memory per process (``selectors.ACCESS``); a change must reach them.


def test_revoking_a_key_in_use_refuses_its_next_call(api_client, org_key):
    assert api_client.get(INFO, **bearer(org_key)).status_code == 200  # now in memory
    services.revoke_api_key(api_key=ApiKey.objects.get(prefix=ApiKey.prefix_of(org_key)))

    response = api_client.get(INFO, **bearer(org_key))

    assert response.status_code == 401
    assert error_code(response) == "api_key_revoked"


def test_suspending_an_organization_in_use_shows_on_its_next_call(api_client, org_key):
    from apps.customers.models import Organization

    assert api_client.get("/api/v1/organization", **bearer(org_key)).json()["status"] == "active"
    organization = Organization.objects.get(api_keys__prefix=ApiKey.prefix_of(org_key))
    services.set_organization_status(
        organization=organization, status=Organization.Status.SUSPENDED
    )

    response = api_client.get("/api/v1/organization", **bearer(org_key))

    assert response.json()["status"] == "suspended"


def test_a_revocation_made_by_another_process_arrives_with_the_new_generation(
    api_client, org_key, monkeypatch
):
    from django.core.cache import cache
    from django.utils import timezone

    from apps.customers.selectors import ACCESS

    monkeypatch.setattr(ACCESS, "recheck_seconds", 0)
    assert api_client.get(INFO, **bearer(org_key)).status_code == 200
    # Another process revokes: the row changes and the shared generation moves on, but
    # nothing in this process is told.
    ApiKey.objects.filter(prefix=ApiKey.prefix_of(org_key)).update(revoked_at=timezone.now())
    assert api_client.get(INFO, **bearer(org_key)).status_code == 200  # still remembered
    cache.set(ACCESS.key, "a-generation-started-elsewhere", timeout=None)

    response = api_client.get(INFO, **bearer(org_key))

    assert response.status_code == 401
    assert error_code(response) == "api_key_revoked"
