"""The customer billing pages, under /billing/ (namespace ``billing``)."""

from django.urls import path

from apps.budgets import views as budgets
from apps.customers import views as customers
from apps.usage import views as usage
from billing_portal import pages

app_name = "billing"

urlpatterns = [
    path("", pages.overview, name="overview"),
    path("switch", customers.switch_organization, name="switch"),
    path("usage/", usage.usage, name="usage"),
    path("usage/export.csv", usage.usage_export, name="usage-export"),
    path("budgets/", budgets.budgets, name="budgets"),
    path("budgets/new", budgets.budget_new, name="budget-new"),
    path("budgets/<int:budget_id>/", budgets.budget_detail, name="budget"),
    path("budgets/<int:budget_id>/edit", budgets.budget_edit, name="budget-edit"),
    path("budgets/<int:budget_id>/toggle", budgets.budget_toggle, name="budget-toggle"),
    path("budgets/<int:budget_id>/delete", budgets.budget_delete, name="budget-delete"),
    path("wallet/", customers.wallet, name="wallet"),
    path("plans/", customers.plans, name="plans"),
    path("plans/change", customers.change_plan, name="plan-change"),
    path("subscription", customers.subscription_action, name="subscription"),
    path("invoices/", pages.invoices, name="invoices"),
    path("statements/", usage.statements, name="statements"),
    path("statements/<int:statement_id>/", usage.statement_detail, name="statement"),
    path("statements/<int:statement_id>.pdf", usage.statement_pdf, name="statement-pdf"),
    path("keys/", customers.api_keys, name="api-keys"),
    path("keys/<int:key_id>/revoke", customers.revoke_api_key, name="api-key-revoke"),
    path("alerts/", budgets.channels, name="channels"),
    path("alerts/<int:channel_id>/test", budgets.channel_test, name="channel-test"),
    path("alerts/<int:channel_id>/delete", budgets.channel_delete, name="channel-delete"),
    path("members/", customers.members, name="members"),
    path("members/<int:membership_id>", customers.change_member, name="member-change"),
]
