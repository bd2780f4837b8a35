"""The staff groups of the admin and what each may do (applied by data migrations, and
re-applied by ``manage.py staff_groups`` after models or permissions are added).

- **finance**: everything about money: catalog and prices, plans, organisations, wallets,
  credits, billing records (refunds), budgets, alerts; reads Stripe's mirrored objects;
  not members or API keys, and never deletes a plan, product or price.
- **support**: reads everything; acts on alerts (resend) and budgets (change, reset a
  period) and alert channels; never prices, plans, refunds, wallets or credits.
- **read-only**: reads everything.
"""

from __future__ import annotations

FINANCE, SUPPORT, READ_ONLY = "finance", "support", "read-only"

OUR_APPS = ["customers", "pricing", "usage", "budgets"]
# Stripe's mirror is read here (changes go through Stripe and the portal's flows); the
# periodic jobs are the operators' (superusers), not a staff group's.
READ_APPS = [*OUR_APPS, "djstripe"]

# Money, not access or catalog removal: members and API keys are the customers' owners'
# (and superusers'), and plans, products, prices and meters are retired, never deleted.
FINANCE_EXCLUDED = {
    "customers.add_membership",
    "customers.change_membership",
    "customers.delete_membership",
    "customers.add_apikey",
    "customers.change_apikey",
    "customers.delete_apikey",
    "customers.delete_organization",
    "pricing.delete_plan",
    "pricing.delete_product",
    "pricing.delete_servicetype",
    "pricing.delete_pricerule",
    "pricing.delete_pricetier",
    "pricing.delete_includedquota",
    "usage.delete_meter",
}

SUPPORT_ACTS = [
    "budgets.change_budget",
    "budgets.add_budget",
    "budgets.reset_budgetperiod",
    "budgets.resend_alert",
    "budgets.add_notificationchannel",
    "budgets.change_notificationchannel",
]


def permissions_of(group: str, all_permissions) -> list:
    """The permissions of ``group`` among ``all_permissions`` (Permission rows with their
    content type selected)."""

    def name(permission) -> str:
        return f"{permission.content_type.app_label}.{permission.codename}"

    if group == READ_ONLY:
        return [
            p for p in all_permissions
            if p.content_type.app_label in READ_APPS and p.codename.startswith("view_")
        ]  # fmt: skip
    if group == SUPPORT:
        return [
            p for p in all_permissions
            if (p.content_type.app_label in READ_APPS and p.codename.startswith("view_"))
            or name(p) in SUPPORT_ACTS
        ]  # fmt: skip
    if group == FINANCE:
        return [
            p for p in all_permissions
            if (p.content_type.app_label in OUR_APPS and name(p) not in FINANCE_EXCLUDED)
            or (p.content_type.app_label in READ_APPS and p.codename.startswith("view_"))
        ]  # fmt: skip
    raise ValueError(group)


def apply(Group, Permission) -> None:
    """Creates the groups and sets their permissions exactly (idempotent)."""
    everything = list(Permission.objects.select_related("content_type"))
    for group_name in (FINANCE, SUPPORT, READ_ONLY):
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.set(permissions_of(group_name, everything))
