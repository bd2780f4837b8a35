"""The project's URLs plus two probe endpoints that exercise the API's error plumbing:
one that parses a JSON body and one that fails unexpectedly."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_portal.urls import urlpatterns as project_urlpatterns


class EchoApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def post(self, request):
        return Response({"received": request.data})


class BoomApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError("secret internals that must not leak")


urlpatterns = [
    path("api/v1/probe/echo", EchoApi.as_view()),
    path("api/v1/probe/boom", BoomApi.as_view()),
    *project_urlpatterns,
]
