from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.customers.models import ApiKey


class HasApiKeyScope(BasePermission):
    """Allows the call when the key carries the view's ``required_scope`` (if any)."""

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False
        scope = getattr(view, "required_scope", None)
        return scope is None or api_key.has_scope(scope)
