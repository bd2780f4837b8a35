"""The close never misses a write in flight: period after period is closed while threads
post 1,000-event batches for it, and every statement counts exactly the records stamped at
or before its freeze, the rest of its period arriving as late usage on the next one."""

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from apps.usage import books, statements
from apps.usage.ingestion import EventInput, ingest
from apps.usage.models import BillingRecord, Statement, StatementLine
from tests.customers.factories import OrganizationFactory
from tests.pricing.factories import ProductFactory, price

ROUNDS = 20
WRITERS = 3
BATCH = 1000


def month(index: int) -> datetime:
    return datetime(2024 + index // 12, index % 12 + 1, 1, tzinfo=UTC)


class Writers:
    """Threads posting batches of BATCH one-call events, each batch inside the month the
    test is at (``at``); ``committed`` counts the batches written for each month."""

    def __init__(self, organization):
        self.organization = organization
        self.at = 0
        self.committed: dict[int, int] = {}
        self.failures: list[BaseException] = []
        self.batches: list[tuple[datetime, datetime]] = []  # (posted, answered)
        self.stop = threading.Event()
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(WRITERS)]

    def write(self, writer: int) -> None:
        rng = random.Random(writer)
        batch = 0
        try:
            while not self.stop.is_set():
                at, start = self.at, month(self.at)
                seconds = int((month(at + 1) - start).total_seconds()) - 1
                events = [
                    EventInput(
                        idempotency_key=f"w{writer}-{batch}-{n}",
                        fingerprint=f"w{writer}-{batch}-{n}",
                        product_id="lines",
                        usage_amount=D(rng.randint(1, 3)),
                        occurred_at=start + timedelta(seconds=rng.randint(0, seconds)),
                    )  # fmt: skip
                    for n in range(BATCH)
                ]
                called = timezone.now()
                outcomes = ingest(organization=self.organization, events=events)
                self.batches.append((called, timezone.now()))
                assert all(o.status == o.ACCEPTED for o in outcomes), outcomes[0].error
                batch += 1
                with self.changed:
                    self.committed[at] = self.committed.get(at, 0) + 1
                    self.changed.notify_all()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.failures.append(error)
            with self.changed:
                self.changed.notify_all()
        finally:
            connection.close()

    def wait_for(self, at: int, batches: int) -> None:
        with self.changed:
            assert self.changed.wait_for(
                lambda: self.committed.get(at, 0) >= batches or self.failures, timeout=120
            ), "the writers stalled"
        assert not self.failures, self.failures


def amount(queryset, field) -> D:
    return queryset.aggregate(total=Sum(field))["total"] or D(0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_closes_taken_while_batches_are_written_count_exactly_what_they_froze(plan):
    price(ProductFactory(code="lines"), unit_price="0.01", since=month(0))
    organization = OrganizationFactory(plan=plan, time_zone="UTC")
    writers = Writers(organization)
    for thread in writers.threads:
        thread.start()
    try:
        for at in range(ROUNDS):
            writers.at = at
            # Batches of this month are being written when its close begins...
            writers.wait_for(at, 1)
            start, end = statements.statement_period(organization, month(at))
            statement = statements.close_period(
                organization=organization, period_start=start, period_end=end
            )
            assert statement.status == Statement.Status.FINAL, statement.mismatch
            # ...and go on being written for it after the close: late usage.
            writers.wait_for(at, writers.committed[at] + 1)
    finally:
        writers.stop.set()
        for thread in writers.threads:
            thread.join(timeout=120)
    assert not writers.failures, writers.failures
    # The last month's late usage goes on one more statement.
    start, end = statements.statement_period(organization, month(ROUNDS))
    assert (
        statements.close_period(
            organization=organization, period_start=start, period_end=end
        ).status
        == Statement.Status.FINAL
    )

    closes = list(Statement.objects.filter(organization=organization).order_by("period_start"))
    assert len(closes) == ROUNDS + 1
    in_flight = 0
    for this, following in zip(closes, closes[1:], strict=False):
        period = BillingRecord.objects.filter(
            organization=organization,
            occurred_at__gte=this.period_start,
            occurred_at__lt=this.period_end,
        )
        frozen = period.filter(created_at__lte=this.frozen_at)
        late = period.filter(created_at__gt=this.frozen_at)
        lines = StatementLine.objects.filter(statement=this, kind=StatementLine.Kind.USAGE)
        adjustments = StatementLine.objects.filter(
            statement=following, kind=StatementLine.Kind.ADJUSTMENT
        )
        # Every record stamped at or before the freeze is on its statement...
        assert amount(lines, "quantity") == amount(frozen, "usage_amount"), this.period_start
        assert amount(lines, "amount") == amount(frozen, "total_amount"), this.period_start
        # ...and every later one is late usage on the next.
        assert amount(adjustments, "amount") == amount(late, "total_amount"), this.period_start
        assert late.exists()
        in_flight += sum(
            posted <= this.frozen_at < answered for posted, answered in writers.batches
        )
    assert books.check_books() == []
    # Batches were being written as the closes froze, not only between them.
    print(f"{len(closes) - 1} closes, {len(writers.batches)} batches, {in_flight} in flight")
    assert in_flight >= ROUNDS
