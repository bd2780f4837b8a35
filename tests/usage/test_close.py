"""The close workflow: resumed after a crash at any step, run twice at once on PostgreSQL,
it makes one statement and pushes to Stripe once; the statement email."""

import threading
import time
from datetime import UTC, timedelta
from decimal import Decimal as D

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from apps.customers import billing
from apps.pricing.periods import MONTH, period_bounds
from apps.usage import statements
from apps.usage.models import Statement, StatementLine
from tests.customers.factories import OrganizationFactory
from tests.usage.test_statements import record


@pytest.fixture
def stripe_org(fake_stripe, plan, calls):
    """An organisation with a Stripe customer and no metered subscription: its usage
    charges go to Stripe as one invoice item per statement."""
    organization = OrganizationFactory(plan=plan)
    billing.ensure_customer(organization)
    for _ in range(3):
        record(organization, "calls", units=D(250))  # 3 x $2.50 postpaid
    return organization


def bounds(organization):
    start, end = period_bounds(timezone.now(), MONTH, organization.tz)
    return {"organization": organization, "period_start": start, "period_end": end,
            "now": end + timedelta(hours=1)}  # fmt: skip


def pushed(fake_stripe, organization) -> list[dict]:
    return fake_stripe.invoice_items(billing.customer_of(organization).id)


@pytest.mark.django_db
@pytest.mark.parametrize("crash_after", statements.STEPS[:-1])
def test_a_close_that_stopped_after_any_step_resumes_and_does_nothing_twice(
    stripe_org, fake_stripe, crash_after, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        stopped = statements.close_period(**bounds(stripe_org), until=crash_after)
        assert stopped.status == (Statement.Status.FINAL if crash_after in ("finalize",)
                                  else Statement.Status.OPEN)  # fmt: skip
        final = statements.close_period(**bounds(stripe_org))
        again = statements.close_period(**bounds(stripe_org))

    assert final.status == again.status == Statement.Status.FINAL
    assert Statement.objects.count() == 1
    (item,) = pushed(fake_stripe, stripe_org)
    assert item["amount"] == 750 and item["metadata"]["statement"] == str(final.pk)
    assert final.push_method == "invoice_item" and final.stripe_invoice_item_id == item["id"]
    assert StatementLine.objects.filter(statement=final).count() == len(
        {(line.kind, line.description) for line in final.lines.all()}
    )  # no line written twice
    assert [m.to for m in mail.outbox] == [[stripe_org.billing_email]]  # notified once


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_two_workers_closing_at_once_make_one_statement_and_one_push(stripe_org, fake_stripe):
    errors = []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait(timeout=10)
            statements.close_period(**bounds(stripe_org))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    statement = Statement.objects.get()
    assert statement.status == Statement.Status.FINAL
    assert len(pushed(fake_stripe, stripe_org)) == 1
    assert statement.lines.count() == len(set(statement.lines.values_list("description", "kind")))


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_the_freeze_waits_for_records_being_written_and_is_not_stamped_while_they_are(
    plan, calls, settings
):
    """A record stamped before the freeze but committed after the build would be in neither
    this statement (built without it) nor the next (stamped before the freeze): the freeze
    waits for the writers holding the period lock, and is not stamped while they do."""
    organization = OrganizationFactory(plan=plan)
    record(organization, "calls", units=D(250))
    writing, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                record(organization, "calls", units=D(100))  # stamped now, before the freeze
                writing.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(timeout=10)
    try:
        # Not willing to wait: the close stops before the freeze, to be retried.
        settings.STATEMENT_FREEZE_WAIT_SECONDS = 0
        with pytest.raises(statements.WritersInFlight):
            statements.close_period(**bounds(organization))
        stopped = Statement.objects.get(organization=organization)
        assert stopped.frozen_at is None and stopped.built_at is None
        assert not stopped.lines.exists()
        # Willing to wait, but not long enough: the same.
        settings.STATEMENT_FREEZE_WAIT_SECONDS = 0.2
        with pytest.raises(statements.WritersInFlight):
            statements.close_period(**bounds(organization))
        assert Statement.objects.get(organization=organization).frozen_at is None
        # Willing to wait: the retry finishes once the writer has committed.
        settings.STATEMENT_FREEZE_WAIT_SECONDS = 30
        # (time.sleep, not a Timer: a timed wait hangs under faketime)
        threading.Thread(target=lambda: (time.sleep(0.5), release.set())).start()
        statement = statements.close_period(**bounds(organization))
    finally:
        release.set()
        thread.join(timeout=30)

    assert statement.status == Statement.Status.FINAL
    assert statement.usage_total == D("3.50")  # $2.50 committed before, $1.00 during the wait


@pytest.mark.django_db
def test_the_statement_email_has_a_chart_and_the_lines_as_csv(
    stripe_org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        statement = statements.close_period(**bounds(stripe_org))
    (message,) = mail.outbox
    assert "$7.50" in message.subject
    html = message.alternatives[0][0]
    assert "<svg" in html and "Total due" in html
    (name, content, mimetype) = message.attachments[0]
    assert mimetype == "text/csv" and name.endswith(".csv")
    rows = content.strip().splitlines()
    assert rows[0].startswith("position,kind,description")
    assert len(rows) == 1 + statement.lines.count()


@pytest.mark.django_db
def test_periods_due_are_the_ended_ones_without_a_final_statement_oldest_first(plan, settings):
    from apps.customers.models import Organization

    settings.STATEMENT_GRACE_HOURS = 48
    organization = OrganizationFactory(plan=plan)
    Organization.objects.filter(pk=organization.pk).update(
        created_at=timezone.now() - timedelta(days=75)
    )
    now = timezone.now()
    due = [d for d in statements.periods_due(now) if d[0] == organization.pk]
    assert len(due) >= 2 and [d[1] for d in due] == sorted(d[1] for d in due)
    for _, start, end in due:
        assert end <= now - timedelta(hours=48) and start < end
        assert end == period_bounds(end - timedelta(days=1), MONTH, organization.tz)[1]
    # The later period waits for the earlier one.
    statements._open(organization, due[0][1], due[0][2])  # opened, not closed
    with pytest.raises(statements.EarlierPeriodOpen):
        statements.close_period(organization=organization, period_start=due[1][1],
                                period_end=due[1][2])  # fmt: skip
    for _, start, end in due:
        statements.close_period(organization=organization, period_start=start, period_end=end)
    assert not [d for d in statements.periods_due(now) if d[0] == organization.pk]


def _history_at(organization, when):
    """Dates the organisation's latest audit record at ``when`` (as if it was made then)."""
    latest = organization.history.latest()
    type(latest).objects.filter(pk=latest.pk).update(history_date=when)


@pytest.mark.django_db
def test_statement_periods_follow_the_subscriptions_billing_cycle(plan, calls, settings):
    from apps.pricing.periods import anchored_month_bounds

    settings.STATEMENT_GRACE_HOURS = 48
    now = timezone.now()
    anchor = (now - timedelta(days=100)).replace(hour=14, minute=37, second=0, microsecond=0)
    organization = OrganizationFactory(plan=plan, billing_anchor=anchor)
    type(organization).objects.filter(pk=organization.pk).update(created_at=anchor)
    _history_at(organization, anchor)
    organization.refresh_from_db()

    due = [d[1:] for d in statements.periods_due(now) if d[0] == organization.pk]

    assert len(due) == 3  # the look-back of three periods (the org is older)
    for start, end in due:
        assert (start, end) == anchored_month_bounds(start, anchor)
        assert start.minute == 37 and end <= now - timedelta(hours=48)
    assert all(a[1] == b[0] for a, b in zip(due, due[1:], strict=False))  # contiguous
    # Usage is billed in the period its billing cycle says.
    start, end = due[-1]
    record(organization, "calls", units=D(100), at=end - timedelta(minutes=1))
    record(organization, "calls", units=D(200), at=end + timedelta(minutes=1))
    for period_start, period_end in due:
        statement = statements.close_period(organization=organization, period_start=period_start,
                                            period_end=period_end)  # fmt: skip
        assert statement.status == Statement.Status.FINAL
    assert statement.usage_total == D("1.00")  # the minute before its end, not the one after
    assert not [d for d in statements.periods_due(now) if d[0] == organization.pk]


@pytest.mark.django_db
def test_a_subscription_starting_mid_month_cuts_the_calendar_period_at_its_anchor(plan, settings):
    settings.STATEMENT_GRACE_HOURS = 0
    now = timezone.now()
    this_month, _ = period_bounds(now, MONTH, UTC)
    created = period_bounds(this_month - timedelta(days=70), MONTH, UTC)[0]
    organization = OrganizationFactory(plan=plan, time_zone="UTC")
    type(organization).objects.filter(pk=organization.pk).update(created_at=created)
    _history_at(organization, created)
    # Subscribed on the 14th of last month at 14:37; the webhook came a minute later.
    last_month = period_bounds(this_month - timedelta(days=1), MONTH, UTC)[0]
    anchor = last_month.replace(day=14, hour=14, minute=37)
    organization.refresh_from_db()
    organization.billing_anchor = anchor
    organization.save()
    _history_at(organization, anchor + timedelta(minutes=1))

    due = [d[1:] for d in statements.periods_due(now) if d[0] == organization.pk]

    expected, start = [], created
    while start < last_month:  # calendar months before it
        expected.append(period_bounds(start, MONTH, UTC))
        start = expected[-1][1]
    expected.append((last_month, anchor))  # the month it began in, cut at the anchor
    following = anchor.replace(year=this_month.year, month=this_month.month)
    if following <= now:  # then the months of its billing cycle
        expected.append((anchor, following))
    assert due == expected
    assert all(a[1] == b[0] for a, b in zip(due, due[1:], strict=False))  # no gap, no overlap


@pytest.mark.django_db
def test_a_plan_inclusion_starts_again_at_the_billing_anchor(llm):
    from apps.usage.models import BillingRecord

    now = timezone.now()
    anchor = now - timedelta(hours=2)  # the current period began two hours ago
    organization = OrganizationFactory(plan=llm_plan(llm), billing_anchor=anchor)
    before = record(organization, "llm", input_tokens=D(800), at=now - timedelta(hours=3))
    after = record(organization, "llm", input_tokens=D(800), at=now - timedelta(hours=1))

    included = {
        r.pk: D(r.breakdown[0]["included_quantity"])
        for r in BillingRecord.objects.filter(pk__in=[before.pk, after.pk])
    }
    # 1,000 included a period: each period's 800 is within it (calendar months would
    # have left the second only 200).
    assert included == {before.pk: D(800), after.pk: D(800)}


def llm_plan(product):
    from apps.pricing.models import IncludedQuota

    return IncludedQuota.objects.get(product=product).plan


@pytest.mark.django_db
def test_an_invoice_item_stripe_already_has_is_found_not_made_again(stripe_org, fake_stripe):
    """A push retried after Stripe's idempotency window: the item is found by the statement
    it names."""
    statement = statements.close_period(**bounds(stripe_org), until="check")
    fake_stripe.create_invoice_item(
        {
            "customer": billing.customer_of(stripe_org).id,
            "amount": 750,
            "currency": "usd",
            "metadata": {"statement": str(statement.pk)},
        }
    )  # fmt: skip  (made by a push whose commit was lost)
    final = statements.close_period(**bounds(stripe_org))
    (item,) = pushed(fake_stripe, stripe_org)
    assert final.stripe_invoice_item_id == item["id"]
