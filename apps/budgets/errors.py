"""Errors of the budgets domain."""

from apps.core.errors import PortalError


class BudgetExceeded(PortalError):
    """A hard budget would be crossed (seed 001's 402 ``budget_exceeded``)."""

    code = "budget_exceeded"
    status_code = 402
    message = "This usage would exceed a hard budget."
