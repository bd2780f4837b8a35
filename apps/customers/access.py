"""Who may see and change what on the customer pages.

A signed-in user works in one organisation at a time (the one chosen in the switcher, kept
in the session; else their first). What they may do follows their membership's role:

    viewer   reads every page
    billing  also changes budgets, the wallet (top-ups), the plan and alert channels
    admin    the same as billing
    owner    also manages members and API keys

Every page view is wrapped by ``member_view`` with the least role it needs for the method
used, so a form hidden from a viewer is refused to one who posts it anyway. Objects are
always looked up within the current organisation: another organisation's id is a 404.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import render
from django.utils import timezone

from apps.customers.models import Membership

Role = Membership.Role
RANK = {Role.VIEWER: 0, Role.BILLING: 1, Role.ADMIN: 2, Role.OWNER: 3}
SESSION_KEY = "billing_organization_id"

READ = Role.VIEWER
CHANGE = Role.BILLING  # budgets, wallet, plan, alert channels
MANAGE = Role.OWNER  # members and API keys


def may(membership: Membership, role: str) -> bool:
    return RANK[membership.role] >= RANK[role]


def memberships_of(user) -> list[Membership]:
    return list(
        Membership.objects.filter(user=user)
        .select_related("organization", "organization__plan")
        .order_by("organization__name", "organization_id")
    )


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership the user works in, or None when they belong to no organisation."""
    memberships = memberships_of(request.user)
    if not memberships:
        return None
    chosen = request.session.get(SESSION_KEY)
    for membership in memberships:
        if membership.organization_id == chosen:
            break
    else:
        membership = memberships[0]
    membership.others = memberships  # for the switcher
    return membership


def choose_organization(request: HttpRequest, organization_id: int) -> bool:
    """Switches to ``organization_id`` if the user is a member of it."""
    if not Membership.objects.filter(user=request.user, organization_id=organization_id).exists():
        return False
    request.session[SESSION_KEY] = organization_id
    return True


def member_view(*, read: str = READ, write: str = CHANGE):
    """A page of the current organisation: GET/HEAD need ``read``, any other method
    ``write``. Sets ``request.membership`` and ``request.organization``."""

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = current_membership(request)
            if membership is None:
                return render(request, "billing/no_organization.html", status=403)
            needed = read if request.method in ("GET", "HEAD") else write
            if not may(membership, needed):
                raise PermissionDenied(
                    f"Your role ({membership.get_role_display()}) cannot do this."
                )
            request.membership = membership
            request.organization = membership.organization
            # Dates and times on the pages read in the organisation's time zone.
            with timezone.override(membership.organization.tz):
                return view(request, *args, **kwargs)

        return wrapper

    return decorate


def page_permissions(membership: Membership) -> dict:
    """What the templates show: forms only to those who may use them."""
    return {
        "can_change": may(membership, CHANGE),
        "can_manage": may(membership, MANAGE),
    }
