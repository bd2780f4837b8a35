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
from apps.core import hot_rows, pg_array
from apps.core.rows import unsaved
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
    added: dict[tuple[int, datetime], Decimal] = field(default_factory=dict)
    shift: dict[tuple[int, datetime], Decimal] = field(default_factory=dict)

    @classmethod
    def lock(cls, organization: Organization, instants: set[datetime]) -> Reservations:
        """Locks the periods of the organisation's active budgets that hold any of
        ``instants`` (in budget, then start order), then opens the missing ones."""
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
        periods = (
            BudgetPeriod.objects.filter(
                budget__in=budgets, starts_at__in={start for _, start in wanted}
            )
            .order_by("budget_id", "starts_at")
            .select_for_update()
        )
        found = {(period.budget_id, period.starts_at): period for period in periods}
        missing = [key for key in wanted if key not in found]
        if missing:
            # Only what is missing: an insert that meets an existing period would wait for
            # whoever holds that period's row.
            BudgetPeriod.objects.bulk_create(
                [
                    BudgetPeriod(budget_id=b, starts_at=s, ends_at=wanted[(b, s)])
                    for b, s in missing
                ],
                ignore_conflicts=True,
            )
            found = {(period.budget_id, period.starts_at): period for period in periods.all()}
        reservations.periods.update(found)
        return reservations

    @staticmethod
    def candidate_starts(organization: Organization, instants: set[datetime]) -> list[datetime]:
        """Every period start a budget of any kind could have at ``instants``."""
        tz = organization.tz
        starts = {TOTAL_START}
        for instant in instants:
            for kind in PERIODS.values():
                starts.add(period_bounds(instant, kind, tz)[0])
        return sorted(starts)

    @staticmethod
    def active_sql(organization_id: int) -> tuple[str, list]:
        """One column of a SELECT: whether the organisation has an active budget."""
        return (
            "EXISTS (SELECT 1 FROM budgets_budget WHERE organization_id = %s AND is_active)",
            [organization_id],
        )

    @staticmethod
    def snapshot_sql(organization_id: int, starts: list[datetime]) -> tuple[str, list]:
        """Two columns of one SELECT: the active budgets and those of their periods that
        start at one of ``starts`` (by index), read without a lock (see ``from_snapshot``)."""
        sql = (
            "(SELECT json_agg(json_build_array(b.id, b.name, b.scope, b.service_type_id,"
            " b.product_id, b.api_key_id, b.period, b.limit::text, b.currency, b.is_hard,"
            " b.thresholds) ORDER BY b.id) FROM budgets_budget b"
            " WHERE b.organization_id = %s AND b.is_active),"
            " (SELECT json_agg(json_build_array(p.id, p.budget_id,"
            " array_position(%s::timestamptz[], p.starts_at), p.spent::text))"
            " FROM budgets_budgetperiod p JOIN budgets_budget b ON b.id = p.budget_id"
            " WHERE b.organization_id = %s AND b.is_active"
            " AND p.starts_at = ANY(%s::timestamptz[]))"
        )
        starts_text = pg_array.text(starts)
        return sql, [organization_id, starts_text, organization_id, starts_text]

    @classmethod
    def from_snapshot(
        cls, organization, instants, starts, budget_rows, period_rows
    ) -> Reservations | None:
        """The reservations as ``snapshot_sql``'s columns read them (no lock), to check and
        apply in memory; None if a period the events need does not exist yet (``lock``
        opens it)."""
        budgets = [
            unsaved(Budget, id=id, organization=organization, name=name, scope=scope,
                   service_type_id=service_type, product_id=product, api_key_id=api_key,
                   period=period, limit=Decimal(limit), currency=currency, is_hard=is_hard,
                   thresholds=thresholds, is_active=True)
            for id, name, scope, service_type, product, api_key, period, limit, currency,
            is_hard, thresholds in budget_rows or ()
        ]  # fmt: skip
        reservations = cls(organization, budgets)
        found = {
            (budget_id, starts[index - 1]): (id, Decimal(spent))
            for id, budget_id, index, spent in period_rows or ()
        }
        tz = organization.tz
        for budget in budgets:
            for instant in instants:
                start, end = bounds(budget, instant, tz)
                if (budget.pk, start) not in found:
                    return None
                id, spent = found[(budget.pk, start)]
                reservations.periods[(budget.pk, start)] = unsaved(
                    BudgetPeriod, id=id, budget=budget, starts_at=start, ends_at=end, spent=spent
                )
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
            key = (budget.pk, period.starts_at)
            self.changed.add(key)
            self.added[key] = self.added.get(key, Decimal(0)) + cost
            if budget.limit > 0 and any(
                not budget.has_reached(t, before) and budget.has_reached(t, period.spent)
                for t in budget.thresholds
            ):
                self.crossed.add(budget.pk)

    def write(self) -> None:
        if self.changed:
            BudgetPeriod.objects.bulk_update([self.periods[key] for key in self.changed], ["spent"])

    def hot_part(self) -> hot_rows.Part:
        """Adds what was applied to periods read without a lock (``from_snapshot``) in one
        UPDATE that locks them in the order ``lock`` does. Its ``apply`` checks every hard limit
        against what the periods then really hold (False if one would be passed: the
        caller rolls back and decides again under the locks). Thresholds crossed are those
        the real sums crossed."""
        added = {self.periods[key].pk: (key, cost) for key, cost in self.added.items()}
        if not added:
            return hot_rows.Part([], [], "", bool)
        ids = sorted(added)
        cases = " ".join("WHEN %s THEN %s::numeric" for _ in ids)
        params = [*ids]
        for pk in ids:
            params += [pk, added[pk][1]]
        ctes = [
            ("periods_locked", "SELECT id FROM budgets_budgetperiod WHERE id IN ("
             + ", ".join(["%s"] * len(ids)) + ") AND {after} ORDER BY budget_id, starts_at"
             " FOR UPDATE"),  # (the order ``lock`` takes them in)
            ("periods", f"UPDATE budgets_budgetperiod SET spent = spent + CASE id {cases} END"
             " WHERE id IN (SELECT id FROM periods_locked) RETURNING id, spent"),
        ]  # fmt: skip

        def apply(rows) -> bool:
            return self._check({id: Decimal(spent) for id, spent in rows or ()}, added)

        return hot_rows.Part(
            ctes, params, "(SELECT json_agg(json_build_array(id, spent::text)) FROM periods)", apply
        )

    def _check(self, after: dict, added: dict) -> bool:
        budgets = {budget.pk: budget for budget in self.budgets}
        self.crossed.clear()
        for pk, (key, cost) in added.items():
            budget, period = budgets[key[0]], self.periods[key]
            if pk not in after:
                return False  # the period went (its budget deleted): decide again
            spent = after[pk]
            if budget.is_hard and cost > 0 and spent > budget.limit:
                return False
            before = spent - cost
            self.shift[key] = spent - period.spent  # what others added meanwhile
            period.spent = spent
            if budget.limit > 0 and any(
                not budget.has_reached(t, before) and budget.has_reached(t, spent)
                for t in budget.thresholds
            ):
                self.crossed.add(budget.pk)
        return True


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
