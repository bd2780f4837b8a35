"""Endpoints of the portal as a whole: health and service information."""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import billing_portal
from billing_portal import health

STARTED_AT = time.monotonic()


def _port(request: HttpRequest) -> int:
    try:
        return int(request.get_port())
    except (TypeError, ValueError):
        return settings.PORT


@require_GET
def health_view(request: HttpRequest) -> JsonResponse:
    status, results = health.run_checks()
    return JsonResponse(
        {
            "status": status,
            "service": settings.SERVICE_NAME,
            "port": _port(request),
            "version": billing_portal.__version__,
            "dependencies": {name: result.status for name, result in results.items()},
        },
        status=health.HTTP_STATUS[status],
    )


@require_GET
def health_detailed_view(request: HttpRequest) -> JsonResponse:
    status, results = health.run_checks(detailed=True)
    return JsonResponse(
        {
            "status": status,
            "service": settings.SERVICE_NAME,
            "port": _port(request),
            "version": billing_portal.__version__,
            "environment": settings.DJANGO_ENV,
            "uptime_seconds": round(time.monotonic() - STARTED_AT, 1),
            "checked_at": timezone.now().isoformat(),
            "stripe_enabled": settings.STRIPE_ENABLED,
            "dependencies": {name: result.as_detailed() for name, result in results.items()},
        },
        status=health.HTTP_STATUS[status],
    )


class InfoApi(APIView):
    """What this service is, and who the caller is."""

    class OutputSerializer(serializers.Serializer):
        class CallerSerializer(serializers.Serializer):
            key_prefix = serializers.CharField()
            key_kind = serializers.CharField()
            organization_id = serializers.CharField(allow_null=True)
            scopes = serializers.ListField(child=serializers.CharField())

        service = serializers.CharField()
        version = serializers.CharField()
        api_version = serializers.CharField()
        environment = serializers.CharField()
        stripe_enabled = serializers.BooleanField()
        max_body_bytes = serializers.IntegerField()
        documentation = serializers.DictField(child=serializers.CharField())
        caller = CallerSerializer()

    @extend_schema(operation_id="info_retrieve", responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        api_key = request.auth
        data = {
            "service": settings.SERVICE_NAME,
            "version": billing_portal.__version__,
            "api_version": "v1",
            "environment": settings.DJANGO_ENV,
            "stripe_enabled": settings.STRIPE_ENABLED,
            "max_body_bytes": settings.API_MAX_BODY_BYTES,
            "documentation": {
                "openapi": request.build_absolute_uri("/api/schema/"),
                "docs": request.build_absolute_uri("/api/docs/"),
            },
            "caller": {
                "key_prefix": api_key.prefix,
                "key_kind": api_key.kind,
                "organization_id": api_key.organization.slug if api_key.organization else None,
                "scopes": api_key.scopes,
            },
        }
        return Response(self.OutputSerializer(data).data)
