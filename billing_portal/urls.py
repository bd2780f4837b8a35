from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.permissions import AllowAny

from apps.customers.webhooks import WebhookView
from billing_portal import metrics, views

api_v1 = [
    path("info", views.InfoApi.as_view(), name="info"),
    path("", include("apps.customers.api.urls")),
    path("", include("apps.usage.api.pricing_urls")),
    path("", include("apps.usage.api.urls")),
    path("", include("apps.budgets.api.urls")),
]

public = {"permission_classes": [AllowAny], "authentication_classes": []}

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("health", views.health_view, name="health"),
    path("health/detailed", views.health_detailed_view, name="health-detailed"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    # The API's description is public; the API itself needs a key.
    path("api/schema/", SpectacularAPIView.as_view(**public), name="schema"),
    # (its settings come from a script of its own, so the page needs no inline script)
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", **public),
        name="api-docs",
    ),
    # (Redoc's footer shows its maker's logo, from its maker's address)
    path(
        "api/redoc/",
        csp_update({"img-src": ["https://cdn.redoc.ly"]})(
            SpectacularRedocView.as_view(url_name="schema", **public)
        ),
        name="api-redoc",
    ),
    # dj-stripe's webhook view with our checks and the hand-off to Celery; its own URLs
    # stay for reversing.
    path("stripe/webhook/<uuid:uuid>/", WebhookView.as_view(), name="stripe-webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("billing/", include("billing_portal.page_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
