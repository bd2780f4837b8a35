"""Errors of the customers domain (organisations, tenancy, keys)."""

from apps.core.errors import PortalError


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


class UnknownSubject(PortalError):
    """A CloudEvent's or a meter query's ``subject`` names no organisation the key may act
    for: one that does not exist and another organisation's answer the same."""

    code = "unknown_subject"
    status_code = 400
    message = "The subject is not an organisation this key may act for."


class OrganizationSuspended(PortalError):
    code = "organization_suspended"
    status_code = 403
    message = "The organisation is suspended."


class PlanNotOnStripe(PortalError):
    code = "plan_not_on_stripe"
    status_code = 409
    message = "This plan has no Stripe price yet; run `manage.py sync_stripe_catalog`."


class NoSubscription(PortalError):
    code = "no_subscription"
    status_code = 409
    message = "The organisation has no current subscription."
