from django.urls import path

from apps.usage.api import billing_views, events_views, statement_views, views

urlpatterns = [
    path("usage/record", views.UsageRecordApi.as_view(), name="usage-record"),
    path("usage/batch", views.UsageBatchApi.as_view(), name="usage-batch"),
    # OpenMeter's paths: CloudEvents in, meters and their queries out.
    path("events", events_views.EventsApi.as_view(), name="events"),
    path("meters", events_views.MeterListApi.as_view(), name="meters"),
    path("meters/<slug:slug>/query", events_views.MeterQueryApi.as_view(), name="meter-query"),
    path("usage/aggregations", billing_views.AggregationsApi.as_view(), name="usage-aggregations"),
    path("usage/trends", billing_views.TrendsApi.as_view(), name="usage-trends"),
    path("usage/top-consumers", billing_views.TopConsumersApi.as_view(), name="top-consumers"),
    path("billing/process", billing_views.ProcessBillingApi.as_view(), name="billing-process"),
    path("billing/refund", billing_views.RefundBillingApi.as_view(), name="billing-refund"),
    path("billing/records", billing_views.RecordListApi.as_view(), name="billing-records"),
    path(
        "billing/statements",
        statement_views.StatementListApi.as_view(),
        name="billing-statements",
    ),
    path(
        "billing/statements/<int:statement_id>",
        statement_views.StatementDetailApi.as_view(),
        name="billing-statement",
    ),
    path(
        "billing/records/user/<str:user_id>",
        billing_views.UserRecordsApi.as_view(),
        name="billing-records-user",
    ),
    path("quota/check", billing_views.QuotaCheckApi.as_view(), name="quota-check"),
    path("stats", billing_views.StatsApi.as_view(), name="stats"),
    path("wallet", billing_views.WalletApi.as_view(), name="wallet"),
]
