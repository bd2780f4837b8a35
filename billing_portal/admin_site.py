"""The admin site of the portal: the finance dashboard is its index."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class PortalAdminSite(admin.AdminSite):
    site_header = "Billing portal · finance"
    site_title = "Billing portal admin"
    index_title = "Finance dashboard"
    index_template = "admin/finance_index.html"

    def index(self, request, extra_context=None):
        context = dict(extra_context or {})
        if request.user.has_perm("usage.view_dailyusage"):
            from billing_portal.dashboard import dashboard

            context["dashboard"] = dashboard()
        return super().index(request, context)


class PortalAdminConfig(AdminConfig):
    default_site = "billing_portal.admin_site.PortalAdminSite"
