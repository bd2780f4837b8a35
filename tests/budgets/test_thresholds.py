"""Thresholds are whole percentages, reached exactly (no rounding before comparing)."""

from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.budgets.models import Budget
from apps.budgets.selectors import BudgetStatus

pytestmark = pytest.mark.django_db


def status(budget: Budget, spent: str) -> BudgetStatus:
    return BudgetStatus(budget=budget, period_start=timezone.now(), period_end=None, spent=D(spent))


def test_a_threshold_is_reached_at_exactly_its_share_of_the_limit(org):
    budget = Budget(organization=org, name="b", limit=D(100), currency="USD", thresholds=[80])

    assert status(budget, "79.995").crossed_thresholds == []  # 79.995 % is not 80 %
    assert status(budget, "80").crossed_thresholds == [80]


def test_a_fractional_threshold_is_refused(org):
    budget = Budget(organization=org, name="b", limit=D(100), currency="USD", thresholds=[85.5])

    with pytest.raises(ValidationError) as raised:
        budget.full_clean()

    assert "thresholds" in raised.value.message_dict
