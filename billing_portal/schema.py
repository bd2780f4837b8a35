"""OpenAPI generation (drf-spectacular) fitted to how the API is written.

Each API view nests its own ``InputSerializer`` / ``OutputSerializer``; components are named
after the whole nesting path (``InfoApi.OutputSerializer`` -> ``InfoOutput``), so the many
``OutputSerializer`` classes never collide.

Every operation also documents the error answers it can give, each as the one ``Error``
shape, with the codes it may carry. Most follow from how the view is configured, in one
place here: 400 always (the middleware refuses, before any view, an address or header it
cannot store and a Content-Length that is no number), 401 where a key authenticates the
call, 403 where a permission checks the key's scope, 404 where the path names a resource,
413 and 415 where a body is read, 429 where a throttle applies, 406 for an ``Accept`` that
is not JSON, 503 when the database cannot be reached. What the view's own services refuse
(a hard budget's 402, an idempotency conflict's 409, a product with no price's 422, an
organisation the key may not act for) the view names as the error types it may raise, in
``error_types``: each type's ``status_code`` and ``code`` say the rest.
"""

from __future__ import annotations

from collections import defaultdict

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework.permissions import AllowAny, IsAuthenticated

from apps.core.errors import ErrorSerializer
from billing_portal.middleware import DATABASE_RETRY_AFTER_SECONDS

# What a status means, whatever the operation; its response lists the codes it may carry.
MEANINGS = {
    400: "The request is malformed or has invalid fields (`details.fields` names them).",
    401: "No API key, or one that is malformed, unknown or revoked.",
    402: "The usage cannot be paid as asked, or would cross a hard budget.",
    403: "The key lacks the scope this operation needs, or the organisation is suspended.",
    404: "No such resource, or one this key may not act for.",
    406: "The `Accept` header asks for something other than JSON.",
    409: "The request conflicts with an earlier one or with the resource's state.",
    413: "The body is over the size limit (`details.max_bytes`), or a batch holds too many events.",
    415: "The body's `Content-Type` is not one this operation reads.",
    422: "No price is configured for the usage at that instant.",
    429: "Over the key's request rate: retry after `Retry-After` seconds.",
    503: "Briefly unavailable (the database, or a lock held too long): retry shortly, a write "
    "with the same idempotency key.",
}
HEADERS = {
    401: {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "required": True,
            "description": 'How to authenticate: `Bearer realm="api"`.',
        }
    },
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
            "description": "Seconds until the key's window opens again.",
        }
    },
    503: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": f"Seconds to wait ({DATABASE_RETRY_AFTER_SECONDS} when the database "
            "is unreachable).",
        }
    },
}
AUTHENTICATION_CODES = {
    "not_authenticated",
    "authentication_failed",
    "malformed_credentials",
    "invalid_api_key",
    "api_key_revoked",
}


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        parts = type(serializer).__qualname__.split(".")
        parts = [part.removesuffix("Serializer").removesuffix("Api") for part in parts]
        return "".join(parts)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation["responses"]
        for status, codes in sorted(self.error_codes(operation).items()):
            if str(status) in responses:
                continue
            codes_text = ", ".join(f"`{code}`" for code in sorted(codes))
            responses[str(status)] = {
                "description": f"{MEANINGS[status]} Codes: {codes_text}.",
                **({"headers": HEADERS[status]} if status in HEADERS else {}),
                "content": {"application/json": {"schema": error}},
            }
        return operation

    def error_codes(self, operation: dict) -> dict[int, set[str]]:
        """The error codes this operation may answer with, by status."""
        view = self.view
        codes: dict[int, set[str]] = defaultdict(set)
        codes[400] |= {"validation_error", "bad_request"}
        codes[406].add("not_acceptable")
        codes[503].add("service_unavailable")
        if view.get_authenticators():
            codes[401] |= AUTHENTICATION_CODES
        if any(not isinstance(p, (AllowAny, IsAuthenticated)) for p in view.get_permissions()):
            codes[403].add("permission_denied")
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
            codes[404].add("not_found")
        if "requestBody" in operation:
            codes[400].add("malformed_request")
            codes[413].add("payload_too_large")
            codes[415].add("unsupported_media_type")
        if view.get_throttles():
            codes[429].add("throttled")
        for error_type in getattr(view, "error_types", ()):
            codes[error_type.status_code].add(error_type.code)
        return codes


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.customers.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An organisation or service key, as `Authorization: Bearer <key>` "
            "(or, equivalently, `X-API-Key: <key>`).",
        }
