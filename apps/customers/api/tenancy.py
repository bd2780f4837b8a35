"""The one place that decides which organisation an API call acts for.

An organisation key acts for its own organisation only: naming another one is answered
exactly like naming one that does not exist. A service key acts for the organisation the
request names in ``organization_id`` (query string first, then the JSON body), or in a
CloudEvent's ``subject``.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from apps.customers import selectors
from apps.customers.errors import (
    OrganizationNotFound,
    OrganizationRequired,
    OrganizationSuspended,
    UnknownSubject,
)
from apps.customers.models import ApiKey, Organization

# What the functions below raise, for the views that call them to name among their
# ``error_types`` (the error answers the schema documents): organization_for_request,
# the same with ``allow_suspended``, optional_organization, organization_for_subject.
ORGANIZATION_ERRORS = (OrganizationRequired, OrganizationNotFound, OrganizationSuspended)
READ_ORGANIZATION_ERRORS = (OrganizationRequired, OrganizationNotFound)
OPTIONAL_ORGANIZATION_ERRORS = (OrganizationNotFound,)
SUBJECT_ERRORS = (UnknownSubject, OrganizationSuspended)


def requested_organization_id(request: Request) -> str | None:
    value = request.query_params.get("organization_id")
    if value is None and isinstance(request.data, dict):
        value = request.data.get("organization_id")
    if value is None:
        return None
    return str(value).strip() or None


def organization_for_request(
    request: Request,
    organization_id: str | None = None,
    *,
    allow_suspended: bool = False,
) -> Organization:
    """The organisation this call acts for.

    ``organization_id`` defaults to the one the request names. Raises
    OrganizationRequired (a service key that names none), OrganizationNotFound (unknown, or
    not the caller's), OrganizationSuspended (unless ``allow_suspended``).
    """
    api_key = request.auth
    if not isinstance(api_key, ApiKey):
        raise NotAuthenticated()
    if organization_id is None:
        organization_id = requested_organization_id(request)

    if api_key.is_service:
        if organization_id is None:
            raise OrganizationRequired()
        organization = selectors.organization_by_slug(organization_id)
        if organization is None:
            raise OrganizationNotFound(details={"organization_id": organization_id})
    else:
        organization = api_key.organization
        if organization_id is not None and organization_id != organization.slug:
            raise OrganizationNotFound(details={"organization_id": organization_id})

    if not allow_suspended and not organization.is_active:
        raise OrganizationSuspended(details={"organization_id": organization.slug})
    return organization


def organization_for_subject(
    subject: str, *, api_key: ApiKey | None, allow_suspended: bool = False
) -> Organization:
    """The organisation a CloudEvents ``subject`` (its slug, the API's ``organization_id``)
    names, for ``api_key``: an organisation key's own only, any for a service key (or for
    the portal itself, ``api_key`` None). Raises UnknownSubject, OrganizationSuspended."""
    if api_key is not None and not api_key.is_service:
        organization = api_key.organization
        if subject != organization.slug:
            raise UnknownSubject(details={"subject": subject[:300]})
    else:
        organization = selectors.organization_by_slug(subject)
        if organization is None:
            raise UnknownSubject(details={"subject": subject[:300]})
    if not allow_suspended and not organization.is_active:
        raise OrganizationSuspended(details={"organization_id": organization.slug})
    return organization


def optional_organization(request: Request) -> Organization | None:
    """For reads that may span the platform: an organisation key reads its own
    organisation; a service key the one it names, or (naming none) the whole platform."""
    api_key = request.auth
    is_service = isinstance(api_key, ApiKey) and api_key.is_service
    if is_service and requested_organization_id(request) is None:
        return None
    return organization_for_request(request, allow_suspended=True)
