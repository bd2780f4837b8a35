from django.urls import path

from apps.usage.api import pricing_views as views

urlpatterns = [
    path("billing/calculate", views.CalculateApi.as_view(), name="billing-calculate"),
    path("pricing/estimate", views.EstimateApi.as_view(), name="pricing-estimate"),
    path("pricing/products", views.ProductListApi.as_view(), name="pricing-products"),
    path(
        "pricing/products/<str:code>",
        views.ProductDetailApi.as_view(),
        name="pricing-product-detail",
    ),
]
