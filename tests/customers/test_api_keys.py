from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from django.utils import timezone

from apps.customers import selectors, services
from apps.customers.models import ApiKey
from tests.customers.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


def test_an_issued_key_is_stored_only_as_its_hash(organization):
    issued = services.issue_api_key(name="ci", organization=organization)

    row = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.raw_key.startswith(row.prefix + "_")
    assert row.secret_hash == ApiKey.hash_key(issued.raw_key)
    stored = " ".join(str(value) for value in row.__dict__.values())
    assert issued.raw_key not in stored
    assert issued.raw_key.split("_")[-1] not in stored


def test_a_key_is_found_by_its_secret_and_not_by_a_near_miss(organization):
    issued = services.issue_api_key(name="ci", organization=organization)

    assert selectors.api_key_for_raw_key(issued.raw_key) == issued.api_key
    near_miss = issued.raw_key[:-1] + ("A" if issued.raw_key[-1] != "A" else "B")
    assert selectors.api_key_for_raw_key(near_miss) is None
    assert selectors.api_key_for_raw_key("not-a-key") is None
    assert selectors.api_key_for_raw_key("") is None


def test_organization_and_service_keys_carry_their_kind_and_default_scopes(organization):
    org_key = services.issue_api_key(name="o", organization=organization).api_key
    svc_key = services.issue_api_key(name="s", service=True).api_key

    assert org_key.kind == ApiKey.Kind.ORGANIZATION and org_key.prefix.startswith("bp_org_")
    assert svc_key.kind == ApiKey.Kind.SERVICE and svc_key.prefix.startswith("bp_svc_")
    assert svc_key.organization is None
    assert set(org_key.scopes) == set(ApiKey.Scope.values)
    assert ApiKey.Scope.BUDGETS_WRITE not in svc_key.scopes


def test_a_key_kind_that_contradicts_its_organization_is_refused(organization):
    with pytest.raises(ValueError):
        services.issue_api_key(name="x", organization=organization, service=True)
    with pytest.raises(ValueError):
        services.issue_api_key(name="x")


def test_the_database_refuses_a_service_key_with_an_organization(organization):
    with pytest.raises(IntegrityError):
        ApiKey.objects.create(
            kind=ApiKey.Kind.SERVICE,
            organization=organization,
            name="bad",
            prefix="bp_svc_AAAAAAAA",
            secret_hash="0" * 64,
        )


def test_unknown_scopes_are_refused(organization):
    with pytest.raises(ValueError, match="Unknown scopes"):
        services.issue_api_key(name="x", organization=organization, scopes=["admin:all"])


def test_revoking_twice_keeps_the_first_revocation_time(organization):
    api_key = services.issue_api_key(name="x", organization=organization).api_key
    first = services.revoke_api_key(api_key=api_key).revoked_at
    second = services.revoke_api_key(api_key=api_key).revoked_at
    assert first is not None and first == second


def test_last_use_is_written_at_most_once_per_resolution(organization, django_assert_num_queries):
    api_key = services.issue_api_key(name="x", organization=organization).api_key
    with django_assert_num_queries(1):
        services.touch_api_key(api_key=api_key)
    with django_assert_num_queries(0):
        services.touch_api_key(api_key=api_key)
    api_key.last_used_at = timezone.now() - services.LAST_USED_RESOLUTION
    with django_assert_num_queries(1):
        services.touch_api_key(api_key=api_key)


def test_create_api_key_command_prints_the_key_as_its_last_line():
    organization = OrganizationFactory(slug="acme")
    out = StringIO()
    call_command("create_api_key", "--org", "acme", "--name", "ci", stdout=out)

    last_line = out.getvalue().strip().splitlines()[-1]
    api_key = selectors.api_key_for_raw_key(last_line)
    assert api_key is not None
    assert api_key.organization == organization and api_key.name == "ci"


def test_create_api_key_command_makes_service_keys_with_chosen_scopes():
    out = StringIO()
    call_command("create_api_key", "--service", "--scope", "usage:write", stdout=out)

    api_key = selectors.api_key_for_raw_key(out.getvalue().strip().splitlines()[-1])
    assert api_key.is_service and api_key.scopes == ["usage:write"]


def test_create_api_key_command_refuses_an_unknown_organization():
    with pytest.raises(CommandError, match="No organisation"):
        call_command("create_api_key", "--org", "nobody", stdout=StringIO())
