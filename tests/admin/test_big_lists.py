"""The usage lists stay cheap however big the table: bounded counts, a date drill-down
from the rollup, and an exact key search through the (organisation, key) index."""

from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.core.admin_actions import EstimatedCountPaginator
from apps.usage.ingestion import EventInput, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, org, calls):
    events = [EventInput(idempotency_key=f"evt-{n}", product_id="calls", fingerprint=f"f{n}",
                         usage_amount=D(1)) for n in range(5)]  # fmt: skip
    ingest(organization=org, events=events)
    client.force_login(get_user_model().objects.create_superuser("s", "s@example.com", "pw-123456"))
    return client


def test_a_small_list_is_counted_exactly(staff):
    page = staff.get("/admin/usage/usageevent/").content.decode()
    assert "5 usage events" in page


def test_beyond_the_bound_the_count_is_the_planners_estimate(staff, monkeypatch):
    from apps.usage.models import UsageEvent

    monkeypatch.setattr(EstimatedCountPaginator, "EXACT_UP_TO", 2)
    paginator = EstimatedCountPaginator(UsageEvent.objects.order_by("-pk"), 100)
    assert paginator.count >= 3  # never fewer than the rows it saw
    assert len(paginator.page(1).object_list) == min(5, paginator.count)  # exact rows


def test_the_date_drill_down_comes_from_the_rollup(staff, org):
    today = timezone.now().astimezone(org.tz).date()
    page = staff.get(
        f"/admin/usage/usageevent/?occurred_at__year={today.year}&occurred_at__month={today.month}"
    ).content.decode()
    assert f"occurred_at__day={today.day}" in page


def test_an_exact_key_is_found(staff):
    page = staff.get("/admin/usage/usageevent/?q=evt-3").content.decode()
    assert "evt-3" in page and "evt-4" not in page and "1 usage event" in page
