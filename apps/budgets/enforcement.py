"""Budget enforcement inside ingestion.

The periods of every active budget an event could touch are locked once per batch (in id
order, after the usage counters and before the funds: one lock order everywhere, so two
batches never deadlock). Each event is checked against every covering hard budget before
it is paid for, and its cost is added to every covering period only once it is accepted:
all-or-nothing across budgets. N concurrent requests can never spend past a hard limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from apps.budgets.errors import BudgetExceeded
from apps.budgets.models import Budget, BudgetPeriod
from apps.customers.models import Organization
from apps.pricing.cost_engine import format_amount, to_minor_units
from apps.pricing.periods import DAY, MONTH, WEEK, period_bounds

PERIODS = {Budget.Period.DAILY: DAY, Budget.Period.WEEKLY: WEEK, Budget.Period.MONTHLY: MONTH}
TOTAL_START = datetime(2000, 1, 1, tzinfo=UTC)  # the one period of a "total" budget


def bounds(budget: Budget, instant: datetime, tz) -> tuple[datetime, datetime | None]:
    if budget.period == Budget.Period.TOTAL:
        return TOTAL_START, None
    return period_bounds(instant, PERIODS[budget.period], tz)


@dataclass
class Reservations:
    organization: Organization
    budgets: list[Budget]
    periods: dict[tuple[int, datetime], BudgetPeriod] = field(default_factory=dict)
    changed: set[tuple[int, datetime]] = field(default_factory=set)
    crossed: set[int] = field(default_factory=set)  # budgets that passed a threshold

    @classmethod
    def lock(cls, organization: Organization, instants: set[datetime]) -> Reservations:
        """Opens (if needed) and locks the periods of the organisation's active budgets
        that hold any of ``instants``."""
        budgets = list(Budget.objects.filter(organization=organization, is_active=True))
        reservations = cls(organization, budgets)
        if not budgets:
            return reservations
        tz = organization.tz
        wanted = {}
        for budget in budgets:
            for instant in instants:
                start, end = bounds(budget, instant, tz)
                wanted[(budget.pk, start)] = end
        BudgetPeriod.objects.bulk_create(
            [BudgetPeriod(budget_id=b, starts_at=s, ends_at=e) for (b, s), e in wanted.items()],
            ignore_conflicts=True,
        )
        for period in (
            BudgetPeriod.objects.select_for_update()
            .filter(budget__in=budgets, starts_at__in={start for _, start in wanted})
            .order_by("budget_id", "starts_at")
        ):
            reservations.periods[(period.budget_id, period.starts_at)] = period
        return reservations

    def covering(self, *, occurred_at, service_type, product_id, api_key_id):
        tz = self.organization.tz
        for budget in self.budgets:
            if budget.covers(service_type=service_type, product_id=product_id,
                             api_key_id=api_key_id):  # fmt: skip
                start, _ = bounds(budget, occurred_at, tz)
                yield budget, self.periods[(budget.pk, start)]

    def check(self, cost: Decimal, **event) -> list[tuple[Budget, BudgetPeriod]]:
        """The periods ``cost`` would be added to; raises BudgetExceeded (changing nothing)
        if it would take any hard budget past its limit."""
        touched = list(self.covering(**event))
        for budget, period in touched:
            if budget.is_hard and cost > 0 and period.spent + cost > budget.limit:
                raise BudgetExceeded(details=exceeded_details(budget, period, cost))
        return touched

    def apply(self, touched: list[tuple[Budget, BudgetPeriod]], cost: Decimal) -> None:
        for budget, period in touched:
            before = period.spent
            period.spent += cost
            self.changed.add((budget.pk, period.starts_at))
            if budget.limit > 0 and any(
                not budget.has_reached(t, before) and budget.has_reached(t, period.spent)
                for t in budget.thresholds
            ):
                self.crossed.add(budget.pk)

    def write(self) -> None:
        if self.changed:
            BudgetPeriod.objects.bulk_update([self.periods[key] for key in self.changed], ["spent"])


def exceeded_details(budget: Budget, period: BudgetPeriod, cost: Decimal) -> dict:
    currency = budget.currency
    return {
        "budget_id": budget.pk,
        "budget_name": budget.name,
        "currency": currency,
        "limit": format_amount(budget.limit, currency),
        "current_usage": format_amount(period.spent, currency),
        "requested": format_amount(cost, currency),
        "limit_minor": to_minor_units(budget.limit, currency),
        "current_usage_minor": to_minor_units(period.spent, currency),
        "period_start": period.starts_at.isoformat(),
        "period_end": period.ends_at.isoformat() if period.ends_at else None,
    }
