from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.api.permissions import HasApiKeyScope
from apps.customers.api.tenancy import READ_ORGANIZATION_ERRORS, organization_for_request
from apps.customers.models import ApiKey

ORGANIZATION_ID_PARAMETER = OpenApiParameter(
    "organization_id",
    str,
    description="The organisation to act for: required with a service key, optional (and "
    "only ever the key's own) with an organisation key.",
)


class OrganizationDetailApi(APIView):
    """The organisation the caller acts for."""

    permission_classes = [HasApiKeyScope]
    required_scope = ApiKey.Scope.BILLING_READ
    error_types = READ_ORGANIZATION_ERRORS

    class OutputSerializer(serializers.Serializer):
        organization_id = serializers.CharField(source="slug")
        name = serializers.CharField()
        billing_email = serializers.EmailField()
        currency = serializers.CharField()
        time_zone = serializers.CharField()
        status = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="organization_retrieve",
        parameters=[ORGANIZATION_ID_PARAMETER],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        organization = organization_for_request(request, allow_suspended=True)
        return Response(self.OutputSerializer(organization).data)
