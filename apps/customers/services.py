"""Writes of the customers app: organisations, memberships and API keys."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.customers import selectors
from apps.customers.models import ApiKey, Membership, Organization

_BASE62 = string.ascii_letters + string.digits

# How stale ``last_used_at`` may get: the key is touched at most once per interval, so a
# busy key costs one UPDATE a minute instead of one per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)

ORGANIZATION_KEY_SCOPES = [scope.value for scope in ApiKey.Scope]
SERVICE_KEY_SCOPES = [
    ApiKey.Scope.USAGE_WRITE.value,
    ApiKey.Scope.BILLING_READ.value,
    ApiKey.Scope.BILLING_WRITE.value,
]


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``raw_key`` exists only here and is never stored."""

    api_key: ApiKey
    raw_key: str


def _random(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def compose_key(*, kind: str, public: str, secret: str) -> str:
    return f"bp_{ApiKey.KEY_TAGS[kind]}_{public}_{secret}"


def create_organization(
    *,
    name: str,
    slug: str,
    billing_email: str,
    currency: str = "USD",
    time_zone: str = "UTC",
) -> Organization:
    organization = Organization(
        name=name,
        slug=slug,
        billing_email=billing_email,
        currency=currency.upper(),
        time_zone=time_zone,
    )
    organization.full_clean()
    organization.save()
    return organization


def add_member(
    *, organization: Organization, user: AbstractBaseUser, role: str = Membership.Role.VIEWER
) -> Membership:
    """Adds ``user`` to ``organization`` with ``role``, or changes the role they have."""
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


def issue_api_key(
    *,
    name: str,
    organization: Organization | None = None,
    service: bool = False,
    scopes: list[str] | None = None,
    created_by: AbstractBaseUser | None = None,
    raw_key: str | None = None,
) -> IssuedKey:
    """Creates an organisation key (or, with ``service=True``, a platform service key).

    Returns the key with its secret, which is shown once and never stored. ``raw_key`` lets
    the demo data install a fixed, known key; anything else draws a random one.
    Raises ValueError when the kind and the organisation disagree.
    """
    if service == (organization is not None):
        raise ValueError("A service key has no organisation; an organisation key needs one.")
    kind = ApiKey.Kind.SERVICE if service else ApiKey.Kind.ORGANIZATION
    if raw_key is None:
        raw_key = compose_key(kind=kind, public=_random(8), secret=_random(40))
    prefix = ApiKey.prefix_of(raw_key)
    if prefix is None or not prefix.startswith(f"bp_{ApiKey.KEY_TAGS[kind]}_"):
        raise ValueError("Malformed API key.")
    if scopes is None:
        scopes = SERVICE_KEY_SCOPES if service else ORGANIZATION_KEY_SCOPES
    unknown = set(scopes) - set(ApiKey.Scope.values)
    if unknown:
        raise ValueError(f"Unknown scopes: {', '.join(sorted(unknown))}")
    api_key = ApiKey.objects.create(
        kind=kind,
        organization=organization,
        name=name,
        prefix=prefix,
        secret_hash=ApiKey.hash_key(raw_key),
        scopes=list(scopes),
        created_by=created_by,
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def revoke_api_key(*, api_key: ApiKey) -> ApiKey:
    """Revokes the key; revoking twice keeps the first revocation time."""
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        selectors.ACCESS.invalidate()
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def touch_api_key(*, api_key: ApiKey) -> None:
    """Records that the key was used, at most once per ``LAST_USED_RESOLUTION``."""
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def set_organization_status(*, organization: Organization, status: str) -> Organization:
    organization.status = status
    organization.full_clean()
    organization.save(update_fields=["status", "updated_at"])
    return organization
