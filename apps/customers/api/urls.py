from django.urls import path

from apps.customers.api.views import OrganizationDetailApi

urlpatterns = [
    path("organization", OrganizationDetailApi.as_view(), name="organization-detail"),
]
