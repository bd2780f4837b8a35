"""OpenAPI generation (drf-spectacular) fitted to how the API is written.

Each API view nests its own ``InputSerializer`` / ``OutputSerializer``; components are named
after the whole nesting path (``InfoApi.OutputSerializer`` -> ``InfoOutput``), so the many
``OutputSerializer`` classes never collide.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        parts = type(serializer).__qualname__.split(".")
        parts = [part.removesuffix("Serializer").removesuffix("Api") for part in parts]
        return "".join(parts)


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
