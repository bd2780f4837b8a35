from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.budgets.api import views

router = SimpleRouter(trailing_slash=False)
router.register("budgets", views.BudgetViewSet, basename="budget")

urlpatterns = [
    path("budgets/check", views.BudgetCheckApi.as_view(), name="budgets-check"),
    path("budgets/violations", views.ViolationsApi.as_view(), name="budgets-violations"),
    *router.urls,
]
