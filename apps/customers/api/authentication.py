"""API-key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.customers import selectors, services
from apps.customers.models import ApiKey


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """What ``request.user`` is for a call made with an API key: never a person, so it
    opens no page and no admin; ``request.auth`` is the key itself."""

    api_key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def pk(self) -> str:
        return self.api_key.prefix

    def __str__(self) -> str:
        return self.api_key.prefix


def raw_key_from(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise exceptions.AuthenticationFailed(
                "Use `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
                code="malformed_credentials",
            )
        return value.strip()
    value = request.META.get("HTTP_X_API_KEY", "").strip()
    return value or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        raw_key = raw_key_from(request)
        if raw_key is None:
            return None
        api_key = selectors.api_key_for_raw_key(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if api_key.is_revoked:
            raise exceptions.AuthenticationFailed(
                "This API key has been revoked.", code="api_key_revoked"
            )
        services.touch_api_key(api_key=api_key)
        # For the request monitoring (per-key request and error counts).
        request._request.api_key_id = api_key.pk
        return ApiKeyPrincipal(api_key=api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when no or a bad key is given.
        return 'Bearer realm="api"'
