"""Customer billing pages of the customers app: organisation switcher, wallet and credits,
plans and the subscription, API keys and members (the overview and invoices, which read
usage and budgets too, are ``billing_portal.pages``).

Views are thin: they check the role (``access.member_view``), read through selectors, and
change things through services; Stripe is reached only through ``billing``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.core import stripe_gateway
from apps.core.errors import PortalError
from apps.customers import access, billing, services, wallets
from apps.customers.access import MANAGE, member_view
from apps.customers.forms import ApiKeyForm, MemberForm, PlanChoiceForm, TopUpForm
from apps.customers.models import ApiKey, CreditGrant, Membership, WalletEntry
from apps.pricing import selectors as pricing_selectors
from apps.pricing.models import Plan, Product

ZERO = Decimal(0)


def page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    """Renders a page with what every page shows: the organisation, the switcher, the
    user's permissions and whether Stripe is configured."""
    membership = request.membership
    return render(
        request,
        template,
        {
            "organization": request.organization,
            "membership": membership,
            "memberships": getattr(membership, "others", [membership]),
            "currency": request.organization.currency,
            "stripe_enabled": stripe_gateway.enabled(),
            **access.page_permissions(membership),
            **context,
        },
        status=status,
    )


def _absolute(request: HttpRequest, name: str) -> str:
    return request.build_absolute_uri(reverse(name))


def _stripe_error(request: HttpRequest, error: Exception) -> None:
    if isinstance(error, PortalError):
        messages.error(request, error.message)
    else:
        messages.error(request, "Stripe could not be reached; nothing was changed. Try again.")


def timestamp(value) -> datetime | None:
    """A Stripe timestamp (seconds) as an instant; None for none."""
    if not value:
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


@require_POST
@member_view(write=access.READ)
def switch_organization(request: HttpRequest) -> HttpResponse:
    try:
        chosen = int(request.POST.get("organization", ""))
    except ValueError:
        chosen = None
    if chosen is None or not access.choose_organization(request, chosen):
        raise Http404("No such organisation.")
    return redirect("billing:overview")


# --- wallet and credits -------------------------------------------------------------------


@member_view()
def wallet(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    now = timezone.now()
    form = TopUpForm(request.POST or None, currency=organization.currency)
    if request.method == "POST":
        if not stripe_gateway.enabled():
            messages.error(request, "Payments are not configured: top-ups need Stripe.")
            return redirect("billing:wallet")
        if form.is_valid():
            try:
                url = billing.checkout_top_up(
                    organization,
                    form.cleaned_data["amount"],
                    success_url=_absolute(request, "billing:wallet") + "?top_up=done",
                    cancel_url=_absolute(request, "billing:wallet") + "?top_up=cancelled",
                )
            except Exception as error:  # noqa: BLE001 - shown to the user, nothing changed
                _stripe_error(request, error)
                return redirect("billing:wallet")
            return redirect(url)
    entries = WalletEntry.objects.filter(wallet__organization=organization).order_by(
        "-created_at", "-id"
    )
    ledger = Paginator(entries, 25).get_page(request.GET.get("page"))
    grants = CreditGrant.objects.filter(organization=organization).order_by(
        "expires_at", "created_at"
    )
    return page(
        request,
        "billing/wallet.html",
        {
            "form": form,
            "wallet_balance": wallets.wallet_balance(organization),
            "credit_balance": wallets.credit_balance(organization, now),
            "ledger": ledger,
            "grants": grants,
            "now": now,
            "top_up": request.GET.get("top_up", ""),
        },
    )


# --- plans and the subscription -----------------------------------------------------------


def price_summary(terms, unit: str) -> str:
    """One line a customer can read: "0.15 per 1M tokens", "0.50 per 10,000 requests"."""
    from apps.pricing.cost_engine import format_quantity

    if terms.model == "per_unit":
        if unit == "token":
            return f"{format_quantity(terms.unit_price * 1_000_000)} per 1M tokens"
        return f"{format_quantity(terms.unit_price)} per {unit}"
    if terms.model == "package":
        return f"{format_quantity(terms.package_price)} per {terms.package_size:,.0f} {unit}s"
    scale, per = (Decimal(1_000_000), "1M tokens") if unit == "token" else (Decimal(1), unit)
    steps = []
    for tier in terms.tiers:
        reach = "above" if tier.up_to is None else f"up to {tier.up_to * 1:,.0f}"
        price = f"{format_quantity(tier.unit_price * scale)} per {per}"
        if tier.flat_fee:
            price += f" + {format_quantity(tier.flat_fee)} flat"
        steps.append(f"{reach}: {price}")
    return f"{terms.model.replace('_', ' ')}: " + "; ".join(steps)


@member_view()
def plans(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    now = timezone.now()
    plan_list = list(
        Plan.objects.filter(is_active=True, currency=organization.currency)
        .filter(Q(is_public=True) | Q(pk=organization.plan_id))
        .prefetch_related("included_quotas__product", "included_quotas__service_type")
        .order_by("sort_order", "base_fee", "code")
    )
    products = list(Product.objects.filter(is_active=True).order_by("service_type_id", "code"))
    rows = []
    for product in products:
        for dimension in product.dimensions:
            cells = []
            for plan in plan_list:
                sheet = pricing_selectors.price_sheet(plan=plan, product=product)
                version = sheet.rule_at(dimension, now)
                cells.append(price_summary(version.terms, product.unit) if version else "—")
            if any(cell != "—" for cell in cells):
                label = product.name if dimension == "units" else f"{product.name}: {dimension}"
                rows.append({"label": label, "cells": cells})
    current = pricing_selectors.effective_plan(organization.plan)
    summary = billing.subscription_summary(organization) if stripe_gateway.enabled() else {}
    return page(
        request,
        "billing/plans.html",
        {
            "plans": plan_list,
            "rows": rows,
            "current_plan": current,
            "subscription": summary,
            "live": summary.get("status") in billing.LIVE_STATUSES,
            "renews_at": timestamp(summary.get("current_period_end")),
        },
    )


@require_POST
@member_view()
def change_plan(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = PlanChoiceForm(request.POST, currency=organization.currency)
    if not form.is_valid():
        messages.error(request, "Choose one of the plans shown.")
        return redirect("billing:plans")
    if not stripe_gateway.enabled():
        messages.error(request, "Payments are not configured: plan changes need Stripe.")
        return redirect("billing:plans")
    plan = form.cleaned_data["plan"]
    try:
        summary = billing.subscription_summary(organization)
        if summary.get("status") in billing.LIVE_STATUSES:
            billing.change_plan(organization, plan)
            messages.success(request, f"You are now on {plan.name}; the change is prorated.")
            return redirect("billing:plans")
        url = billing.checkout_subscription(
            organization,
            plan,
            success_url=_absolute(request, "billing:plans") + "?checkout=done",
            cancel_url=_absolute(request, "billing:plans") + "?checkout=cancelled",
        )
    except Exception as error:  # noqa: BLE001 - shown to the user, nothing changed
        _stripe_error(request, error)
        return redirect("billing:plans")
    return redirect(url)


@require_POST
@member_view()
def subscription_action(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    action = request.POST.get("action")
    if action not in ("cancel_at_period_end", "cancel_now", "resume", "portal"):
        messages.error(request, "Unknown action.")
        return redirect("billing:plans")
    if not stripe_gateway.enabled():
        messages.error(request, "Payments are not configured on this portal.")
        return redirect("billing:plans")
    if action == "cancel_now" and request.POST.get("confirm") != "yes":
        return page(request, "billing/cancel_confirm.html", {})
    try:
        if action == "portal":
            return redirect(
                billing.customer_portal_url(
                    organization, return_url=_absolute(request, "billing:plans")
                )
            )
        if action == "resume":
            billing.resume_subscription(organization)
            messages.success(request, "Your subscription continues.")
        else:
            billing.cancel_subscription(
                organization, at_period_end=action == "cancel_at_period_end"
            )
            messages.success(
                request,
                "Your subscription ends at the end of the period."
                if action == "cancel_at_period_end"
                else "Your subscription is cancelled.",
            )
    except Exception as error:  # noqa: BLE001 - shown to the user
        _stripe_error(request, error)
    return redirect("billing:plans")


# --- API keys and members (owners) --------------------------------------------------------


NEW_KEY_SESSION = "billing_new_api_key"


@member_view(write=MANAGE)
def api_keys(request: HttpRequest) -> HttpResponse:
    """Keys of the organisation. A created key's secret is kept in the session just long
    enough to be shown once, after the redirect (a reload creates nothing)."""
    organization = request.organization
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        issued = services.issue_api_key(
            name=form.cleaned_data["name"],
            organization=organization,
            scopes=form.cleaned_data["scopes"],
            created_by=request.user,
        )
        request.session[NEW_KEY_SESSION] = {"id": issued.api_key.pk, "raw": issued.raw_key}
        return redirect("billing:api-keys")
    shown = request.session.pop(NEW_KEY_SESSION, None)
    keys = list(
        ApiKey.objects.filter(organization=organization).order_by("revoked_at", "-created_at")
    )
    issued = None
    if shown:
        issued = next((key for key in keys if key.pk == shown["id"]), None)
    return page(
        request,
        "billing/api_keys.html",
        {"form": form, "keys": keys, "issued": issued, "raw_key": shown["raw"] if issued else ""},
    )


@require_POST
@member_view(write=MANAGE)
def revoke_api_key(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = get_object_or_404(ApiKey, pk=key_id, organization=request.organization)
    services.revoke_api_key(api_key=api_key)
    messages.success(request, f"Key {api_key.prefix} is revoked; requests with it now fail.")
    return redirect("billing:api-keys")


@member_view(write=MANAGE)
def members(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        User = get_user_model()
        user = User.objects.filter(email__iexact=form.cleaned_data["email"]).first()
        if user is None:
            form.add_error("email", "No user with this email; they must sign up first.")
        else:
            services.add_member(
                organization=organization, user=user, role=form.cleaned_data["role"]
            )
            messages.success(
                request, f"{user.email} is now a member ({form.cleaned_data['role']})."
            )
            return redirect("billing:members")
    member_list = Membership.objects.filter(organization=organization).select_related("user")
    return page(
        request,
        "billing/members.html",
        {"form": form, "members": member_list, "roles": Membership.Role.choices},
    )


@require_POST
@member_view(write=MANAGE)
def change_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    organization = request.organization
    membership = get_object_or_404(Membership, pk=membership_id, organization=organization)
    role = request.POST.get("role")
    remove = request.POST.get("action") == "remove"
    if not remove and role not in Membership.Role.values:
        messages.error(request, "Unknown role.")
        return redirect("billing:members")
    owners = Membership.objects.filter(organization=organization, role=Membership.Role.OWNER)
    if (
        membership.role == Membership.Role.OWNER
        and owners.count() == 1
        and (remove or role != Membership.Role.OWNER)
    ):
        messages.error(request, "An organisation keeps at least one owner.")
        return redirect("billing:members")
    if remove:
        membership.delete()
        messages.success(request, f"{membership.user} is no longer a member.")
    else:
        services.add_member(organization=organization, user=membership.user, role=role)
        messages.success(request, f"{membership.user} is now {role}.")
    return redirect("billing:members")
