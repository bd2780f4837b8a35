"""Customer pages of the budgets app: budgets (create, edit, pause, delete, history) and
alert channels (add, test, remove, deliveries)."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.budgets import selectors, services
from apps.budgets.forms import BudgetForm, ChannelForm
from apps.budgets.models import Alert, Budget, NotificationChannel
from apps.customers.access import CHANGE, member_view
from apps.customers.views import page


def _budget(request: HttpRequest, budget_id: int) -> Budget:
    return get_object_or_404(selectors.budgets_of(request.organization), pk=budget_id)


@member_view()
def budgets(request: HttpRequest) -> HttpResponse:
    statuses = selectors.budget_statuses(
        selectors.budgets_of(request.organization).order_by("name", "id"), at=timezone.now()
    )
    return page(request, "billing/budgets.html", {"statuses": statuses})


@member_view(read=CHANGE)
def budget_new(request: HttpRequest) -> HttpResponse:
    form = BudgetForm(request.POST or None, organization=request.organization)
    if request.method == "POST" and form.is_valid():
        budget = services.save_budget(form.save(commit=False))
        messages.success(request, f"Budget “{budget.name}” is in place.")
        return redirect("billing:budget", budget_id=budget.pk)
    return page(request, "billing/budget_form.html", {"form": form, "budget": None})


@member_view(read=CHANGE)
def budget_edit(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = _budget(request, budget_id)
    form = BudgetForm(request.POST or None, instance=budget, organization=request.organization)
    if request.method == "POST" and form.is_valid():
        services.save_budget(form.save(commit=False))
        messages.success(request, f"Budget “{budget.name}” is saved.")
        return redirect("billing:budget", budget_id=budget.pk)
    return page(request, "billing/budget_form.html", {"form": form, "budget": budget})


@member_view()
def budget_detail(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = _budget(request, budget_id)
    (status,) = selectors.budget_statuses([budget], at=timezone.now())
    periods = budget.periods.annotate(alert_count=Count("alerts")).order_by("-starts_at")[:24]
    alerts = Alert.objects.filter(period__budget=budget).order_by("-created_at")[:20]
    return page(
        request,
        "billing/budget_detail.html",
        {"budget": budget, "status": status, "periods": periods, "alerts": alerts},
    )


@require_POST
@member_view()
def budget_toggle(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = _budget(request, budget_id)
    budget.is_active = not budget.is_active
    services.save_budget(budget)
    state = "active again" if budget.is_active else "paused: it neither refuses nor alerts"
    messages.success(request, f"Budget “{budget.name}” is {state}.")
    if request.POST.get("next") == "list":
        return redirect("billing:budgets")
    return redirect("billing:budget", budget_id=budget.pk)


@member_view(read=CHANGE)
def budget_delete(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = _budget(request, budget_id)
    if request.method == "POST":
        name = budget.name
        budget.delete()
        messages.success(request, f"Budget “{name}” and its history are deleted.")
        return redirect("billing:budgets")
    return page(request, "billing/budget_delete.html", {"budget": budget})


# --- alert channels -----------------------------------------------------------------------


@member_view()
def channels(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = ChannelForm(request.POST or None, organization=organization)
    if request.method == "POST" and form.is_valid():
        channel = form.save()
        messages.success(request, f"Alerts now also go to {channel.display_target}.")
        return redirect("billing:channels")
    channel_list = list(NotificationChannel.objects.filter(organization=organization))
    for channel in channel_list:  # an organisation has a handful of channels
        channel.recent_deliveries = list(
            channel.deliveries.select_related("alert__period__budget").order_by(
                "-alert__created_at", "-id"
            )[:3]
        )
    return page(
        request,
        "billing/channels.html",
        {"form": form, "channels": channel_list},
        status=400 if request.method == "POST" else 200,
    )


def _channel(request: HttpRequest, channel_id: int) -> NotificationChannel:
    return get_object_or_404(NotificationChannel, pk=channel_id, organization=request.organization)


@require_POST
@member_view()
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _channel(request, channel_id)
    error = services.send_test_alert(channel=channel)
    if error:
        messages.error(request, f"The test to {channel.display_target} failed: {error}.")
    else:
        messages.success(request, f"A test alert was sent to {channel.display_target}.")
    return redirect("billing:channels")


@require_POST
@member_view()
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _channel(request, channel_id)
    channel.delete()
    messages.success(request, f"Alerts no longer go to {channel.display_target}.")
    return redirect("billing:channels")
