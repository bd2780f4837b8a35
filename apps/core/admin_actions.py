"""Admin actions that ask for details (an amount, a reason) on a confirmation page first."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from simple_history.admin import SimpleHistoryAdmin

from apps.core.errors import PortalError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledgers and facts: staff read them; corrections are actions that add rows.

    Their lists may be filtered by organisation from links (the organisation page's
    panels, the dashboard) without listing every organisation in the sidebar."""

    def lookup_allowed(self, lookup, value, request=None):
        if lookup.split("__id__exact")[0].endswith("organization"):
            return True
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdmin(SimpleHistoryAdmin):
    """The history view shows both the audit history (every saved change, field by field,
    with who made it) and the staff actions taken on the object with their reasons."""

    object_history_template = "admin/audited_history.html"

    def history_view(self, request, object_id, extra_context=None):
        from django.contrib.admin.models import LogEntry
        from django.contrib.contenttypes.models import ContentType

        actions = (
            LogEntry.objects.filter(
                object_id=str(object_id),
                content_type=ContentType.objects.get_for_model(self.model),
            )
            .select_related("user")
            .order_by("-action_time")[:100]
        )
        return super().history_view(
            request, object_id, {**(extra_context or {}), "action_list": actions}
        )


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=500)


def confirm_and_apply(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    form_class: type[forms.Form],
    title: str,
    apply: Callable[[object, dict, str], None],
) -> HttpResponse | None:
    """Shows ``form_class`` for the selected rows; on confirmation calls ``apply(row,
    cleaned_data, actor)`` for each and reports what succeeded and what was refused."""
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            actor = f"staff:{request.user.get_username()}"
            done, refused = 0, []
            details = "; ".join(
                f"{name}: {value}" for name, value in form.cleaned_data.items()
                if name != "reason" and value not in (None, "")
            )  # fmt: skip
            for obj in queryset:
                obj._change_reason = f"{title}: {form.cleaned_data['reason']}"
                try:
                    apply(obj, form.cleaned_data, actor)
                    done += 1
                except PortalError as error:
                    refused.append(f"{obj}: {error.message}")
                    continue
                # The object's admin history shows who did it, when, and why.
                modeladmin.log_change(
                    request,
                    obj,
                    f"{title}{f' ({details})' if details else ''}. "
                    f"Reason: {form.cleaned_data['reason']}",
                )
            modeladmin.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
            for line in refused:
                modeladmin.message_user(request, line, messages.ERROR)
            return None
    else:
        form = form_class()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "queryset": queryset,
        "form": form,
        "action": request.POST.get("action"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/action_confirmation.html", context)


@admin.action(description="Export the selection as CSV", permissions=["view"])
def export_as_csv(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet):
    """Every concrete field of the selected rows, streamed in chunks: a selection of a
    million rows never sits in memory. (Select all, then this action, exports the whole
    filtered list.) Offered on the lists of records, ledgers, budgets and organisations,
    not where a row holds a secret (API keys, alert targets, Stripe's keys)."""
    from apps.core.csv_stream import streaming_csv

    meta = modeladmin.model._meta
    names = [field.attname for field in meta.concrete_fields]
    rows = queryset.order_by("pk").values_list(*names).iterator(chunk_size=5000)
    return streaming_csv(names, rows, f"{meta.model_name}.csv")


class EstimatedCountPaginator(Paginator):
    """For the big tables: counts exactly up to ``EXACT_UP_TO`` rows (one bounded query)
    and beyond that takes PostgreSQL's own estimate, so a list page never counts a
    million rows. The page shows the estimate; the rows on each page are exact."""

    EXACT_UP_TO = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        bounded = queryset.order_by()[: self.EXACT_UP_TO + 1].count()
        if bounded <= self.EXACT_UP_TO:
            return bounded
        if connection.vendor != "postgresql":
            return queryset.count()
        # An estimate may be short of the truth: the last pages are then reached by
        # filtering, never by paging a million rows.
        return max(bounded, _planner_estimate(queryset))


def _planner_estimate(queryset) -> int:
    import json

    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
