"""The admin site of the portal: the finance dashboard is its index."""

from functools import wraps

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied


class PortalAdminSite(admin.AdminSite):
    site_header = "Billing portal · finance"
    site_title = "Billing portal admin"
    index_title = "Finance dashboard"
    index_template = "admin/finance_index.html"

    def admin_view(self, view, cacheable=False):
        """dj-stripe's own actions (sync, cancel a subscription, ...) check only that the
        user is staff: here they also need the change permission of the model."""
        wrapped = super().admin_view(view, cacheable)

        @wraps(view)
        def guarded(request, *args, **kwargs):
            match = request.resolver_match
            if (
                match is not None
                and match.url_name == "djstripe_custom_action"
                and request.user.is_active
                and request.user.is_staff
                and not request.user.has_perm(f"djstripe.change_{kwargs.get('model_name', '')}")
            ):
                raise PermissionDenied
            return wrapped(request, *args, **kwargs)

        return guarded

    def index(self, request, extra_context=None):
        context = dict(extra_context or {})
        if request.user.has_perm("usage.view_dailyusage"):
            from billing_portal.dashboard import dashboard

            context["dashboard"] = dashboard()
        return super().index(request, context)


class PortalAdminConfig(AdminConfig):
    default_site = "billing_portal.admin_site.PortalAdminSite"

    def ready(self) -> None:
        super().ready()  # every app's admin
        from billing_portal import admin_panels

        admin_panels.install(admin.site)
