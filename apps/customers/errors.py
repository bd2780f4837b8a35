"""Errors of the customers domain (organisations, tenancy, keys)."""

from billing_portal.errors import PortalError


class OrganizationNotFound(PortalError):
    """No such organisation, or one the caller may not act for: the two answer the same,
    so an organisation key cannot probe which ids exist."""

    code = "organization_not_found"
    status_code = 404
    message = "No such organisation."


class OrganizationRequired(PortalError):
    code = "organization_required"
    status_code = 400
    message = "A service key must name the organisation in `organization_id`."


class OrganizationSuspended(PortalError):
    code = "organization_suspended"
    status_code = 403
    message = "The organisation is suspended."
