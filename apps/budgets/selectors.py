"""Reads of budgets: where each stands in its current period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from apps.budgets.enforcement import bounds
from apps.budgets.models import Budget, BudgetPeriod
from apps.customers.models import Organization

ZERO = Decimal(0)


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime | None
    spent: Decimal
    spent_before_budget: Decimal = ZERO  # of spent, what the period spent before the budget

    @property
    def remaining(self) -> Decimal:
        return max(ZERO, self.budget.limit - self.spent)

    @property
    def utilization(self) -> Decimal:
        """Percent of the limit spent (100 and more: at or over the limit)."""
        if self.budget.limit == 0:
            return Decimal(100) if self.spent > 0 else ZERO
        return (self.spent / self.budget.limit * 100).quantize(Decimal("0.01"))

    @property
    def crossed_thresholds(self) -> list:
        return [t for t in self.budget.thresholds if self.budget.has_reached(t, self.spent)]


def budgets_of(organization: Organization) -> QuerySet[Budget]:
    return Budget.objects.filter(organization=organization).select_related(
        "organization", "product", "service_type", "api_key"
    )


def budget_statuses(budgets, *, at: datetime) -> list[BudgetStatus]:
    """Each budget's current period (in its organisation's time zone) and what it spent;
    a period not opened yet has spent nothing. One query for all periods."""
    budgets = list(budgets)
    starts = {}
    for budget in budgets:
        starts[budget.pk] = bounds(budget, at, budget.organization.tz)
    periods = {
        (period.budget_id, period.starts_at): period
        for period in BudgetPeriod.objects.filter(
            budget__in=budgets, starts_at__in={start for start, _ in starts.values()}
        )
    }
    statuses = []
    for budget in budgets:
        start, end = starts[budget.pk]
        period = periods.get((budget.pk, start))
        statuses.append(
            BudgetStatus(
                budget=budget,
                period_start=start,
                period_end=end,
                spent=period.spent if period else ZERO,
                spent_before_budget=period.spent_before_budget if period else ZERO,
            )  # fmt: skip
        )
    return statuses


def violations_and_warnings(organization: Organization, *, at: datetime):
    """Seed 000's budget violations (at or over the limit) and warnings (past a threshold,
    under the limit), for active budgets."""
    statuses = budget_statuses(budgets_of(organization).filter(is_active=True), at=at)
    violations = [s for s in statuses if s.budget.limit > 0 and s.spent >= s.budget.limit]
    warnings = [s for s in statuses if s not in violations and s.crossed_thresholds]
    return violations, warnings
