"""Reads of the customers app."""

from __future__ import annotations

import hmac

from apps.customers.models import ApiKey, Organization


def api_key_for_raw_key(raw_key: str) -> ApiKey | None:
    """The key whose secret is ``raw_key`` (revoked or not), or None."""
    prefix = ApiKey.prefix_of(raw_key)
    if prefix is None:
        return None
    api_key = ApiKey.objects.select_related("organization__plan").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, ApiKey.hash_key(raw_key)):
        return None
    return api_key


def organization_by_slug(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()


def organizations_by_slug(slugs) -> dict[str, Organization]:
    return {org.slug: org for org in Organization.objects.filter(slug__in=slugs)}
