"""Statements: lines rounded once each, totals that add up, a close that resumes and never
runs twice, late usage as an adjustment on the next statement, a cross-check that stops
the close when the rollup and the records disagree."""

import itertools
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apps.customers import wallets
from apps.pricing.cost_engine import PricingModel, round_money
from apps.pricing.periods import MONTH, period_bounds
from apps.pricing.services import TierSpec
from apps.usage import statements
from apps.usage.ingestion import EventInput, ingest
from apps.usage.models import DailyUsage, Statement, StatementLine
from tests.customers.factories import OrganizationFactory
from tests.pricing.factories import IncludedQuotaFactory, ProductFactory, price

pytestmark = pytest.mark.django_db
HALF_CENT = D("0.005")
_keys = itertools.count()


@pytest.fixture
def catalog(plan):
    """Per-unit calls at a third of a cent (costs that do not round evenly), graduated
    tiers, and tokens with a plan inclusion."""
    calls = ProductFactory(code="calls3")
    price(calls, unit_price="0.003333")
    tiered = ProductFactory(code="tiered")
    price(tiered, pricing_model=PricingModel.GRADUATED,
          tiers=[TierSpec(D(100), D("0.0107")), TierSpec(None, D("0.0049"))])  # fmt: skip
    tokens = ProductFactory(code="tok", dimensions=["input_tokens", "output_tokens"])
    price(tokens, dimension="input_tokens", unit_price="0.0000021")
    price(tokens, dimension="output_tokens", unit_price="0.0000083")
    IncludedQuotaFactory(plan=plan, product=tokens, quantity=D(5000))
    return plan


def record(organization, product: str, *, at=None, **amounts):
    n = next(_keys)
    event = EventInput(
        idempotency_key=f"k{n}", product_id=product, fingerprint=f"f{n}", occurred_at=at,
        usage_amount=amounts.get("units"),
        dimensions={k: v for k, v in amounts.items() if k != "units"} or None,
    )  # fmt: skip
    (outcome,) = ingest(organization=organization, events=[event])
    assert outcome.status == outcome.ACCEPTED, outcome.error
    return outcome.record


def this_period(organization):
    return period_bounds(timezone.now(), MONTH, organization.tz)


def close(organization, **kwargs):
    start, end = this_period(organization)
    return statements.close_period(
        organization=organization, period_start=start, period_end=end,
        now=end + timedelta(hours=1), **kwargs,
    )  # fmt: skip


events = st.lists(
    st.one_of(
        st.tuples(st.just("calls3"), st.integers(1, 500)),
        st.tuples(st.just("tiered"), st.integers(1, 90)),
        st.tuples(st.just("tok"), st.integers(0, 4000), st.integers(0, 2500)),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(usage=[("tiered", 1), ("tiered", 49)], wallet=0, credits=0, status="")  # a tie
@given(usage=events, wallet=st.integers(0, 3), credits=st.integers(0, 2),
       status=st.sampled_from(["", "active"]))  # fmt: skip
def test_the_total_is_the_sum_of_rounded_lines_and_rounding_moves_at_most_half_a_cent_a_line(
    catalog, usage, wallet, credits, status
):
    organization = OrganizationFactory(plan=catalog, subscription_status=status)
    if wallet:
        wallets.top_up_wallet(organization=organization, amount=D(wallet), actor="t", reason="t")
    if credits:
        wallets.grant_credits(organization=organization, amount=D(credits), reason="t",
                              granted_by="t")  # fmt: skip
    records = []
    for item in usage:
        if item[0] == "tok":
            records.append(record(organization, "tok", input_tokens=D(item[1]),
                                  output_tokens=D(item[2])))  # fmt: skip
        else:
            records.append(record(organization, item[0], units=D(item[1])))

    statement = close(organization)

    assert statement.status == Statement.Status.FINAL, statement.mismatch
    lines = list(statement.lines.all())
    usage_lines = [line for line in lines if line.kind == StatementLine.Kind.USAGE]
    for line in lines:  # each line rounded once, by the one rule
        assert line.amount == round_money(line.amount_unrounded, "USD")
    assert statement.total_due == sum((line.amount for line in lines), D(0))
    assert statement.usage_total == sum((line.amount for line in usage_lines), D(0))
    unrounded = sum((r.total_amount for r in records), D(0))
    assert statement.unrounded_usage == unrounded
    # Each line moves at most half a cent: exactly half on a tie (0.535 -> 0.54), which no
    # rounding to cents avoids, less otherwise.
    assert abs(unrounded - statement.usage_total) <= HALF_CENT * len(usage_lines)
    for line in usage_lines:
        assert abs(line.amount_unrounded - line.amount) <= HALF_CENT
    assert statement.rounding_difference == unrounded - statement.usage_total
    # What is left to invoice: the postpaid charges (and the base fee of a paying plan).
    postpaid = sum((r.total_amount for r in records if r.billing_method == "payment_charge"),
                   D(0))  # fmt: skip
    fee = catalog.base_fee if status == "active" else D(0)
    assert abs(statement.total_due - postpaid - fee) <= HALF_CENT * len(lines)


def test_closing_twice_changes_nothing(catalog):
    organization = OrganizationFactory(plan=catalog)
    record(organization, "calls3", units=D(300))
    first = close(organization)
    lines = list(first.lines.values_list("description", "amount"))
    again = close(organization)
    assert again.pk == first.pk and again.status == Statement.Status.FINAL
    assert list(again.lines.values_list("description", "amount")) == lines
    assert Statement.objects.count() == 1


def test_a_period_that_has_not_ended_is_refused(catalog):
    organization = OrganizationFactory(plan=catalog)
    start, end = this_period(organization)
    with pytest.raises(statements.PeriodNotEnded):
        statements.close_period(organization=organization, period_start=start, period_end=end)
    assert not Statement.objects.exists()


def test_late_usage_is_an_adjustment_on_the_next_statement_and_the_closed_one_is_unchanged(
    catalog,
):
    organization = OrganizationFactory(plan=catalog)
    start, end = this_period(organization)
    closed_at = end + timedelta(hours=1)
    record(organization, "calls3", units=D(300))
    first = statements.close_period(organization=organization, period_start=start,
                                    period_end=end, now=closed_at)  # fmt: skip
    frozen = (list(first.lines.values()), Statement.objects.filter(pk=first.pk).values().get())
    # Usage of the closed period recorded after its close.
    late = record(organization, "calls3", units=D(600), at=timezone.now() - timedelta(minutes=1))
    late.created_at = closed_at + timedelta(minutes=5)
    type(late).objects.filter(pk=late.pk).update(created_at=late.created_at)

    next_end = period_bounds(end + timedelta(days=1), MONTH, organization.tz)[1]
    second = statements.close_period(
        organization=organization, period_start=end, period_end=next_end,
        now=next_end + timedelta(hours=1),
    )  # fmt: skip
    adjustments = second.lines.filter(kind=StatementLine.Kind.ADJUSTMENT)
    assert [a.amount_unrounded for a in adjustments] == [late.total_amount]
    assert second.adjustments == round_money(late.total_amount, "USD")
    assert (list(first.lines.values()), Statement.objects.filter(pk=first.pk).values().get()) \
        == frozen  # fmt: skip


def test_a_rollup_that_disagrees_with_the_records_stops_the_close(catalog):
    organization = OrganizationFactory(plan=catalog)
    record(organization, "calls3", units=D(300))
    row = DailyUsage.objects.get(organization=organization)
    DailyUsage.objects.filter(pk=row.pk).update(cost=row.cost + D("0.01"))  # planted

    statement = close(organization)

    assert statement.status == Statement.Status.MISMATCH
    (difference,) = statement.mismatch["rollup"].values()
    assert D(difference["rollup"]) - D(difference["records"]) == D("0.01")
    assert not statement.lines.exists() or statement.pushed_at is None  # nothing went out
    assert close(organization).status == Statement.Status.MISMATCH  # stays stopped
    # Repaired, a re-run resumes and finishes.
    DailyUsage.objects.filter(pk=row.pk).update(cost=row.cost)
    rerun = statements.rerun(statement, now=statement.period_end + timedelta(hours=2))
    assert rerun.status == Statement.Status.FINAL and rerun.pk == statement.pk
    assert Statement.objects.filter(organization=organization).count() == 1


def test_a_rerun_builds_the_lines_again_from_the_records_as_put_right(catalog):
    from apps.usage.models import BillingRecord

    organization = OrganizationFactory(plan=catalog)
    charge = record(organization, "calls3", units=D(300))
    good = charge.breakdown
    wrong = [{**good[0], "amount": str(D(good[0]["amount"]) + D("0.02"))}]
    BillingRecord.objects.filter(pk=charge.pk).update(breakdown=wrong)  # planted

    statement = close(organization)
    assert statement.status == Statement.Status.MISMATCH
    assert set(statement.mismatch) == {"lines"}
    stale = statement.lines.get(kind=StatementLine.Kind.USAGE).amount_unrounded
    assert stale == charge.total_amount + D("0.02")

    BillingRecord.objects.filter(pk=charge.pk).update(breakdown=good)  # put right
    rerun = statements.rerun(statement, now=statement.period_end + timedelta(hours=2))

    assert rerun.status == Statement.Status.FINAL and rerun.mismatch == {}
    (line,) = rerun.lines.filter(kind=StatementLine.Kind.USAGE)
    assert line.amount_unrounded == charge.total_amount
    assert rerun.usage_total == round_money(charge.total_amount, "USD")
    # A final statement's lines are never dropped again.
    assert StatementLine.discard_stopped_build(rerun.pk) == 0
    assert rerun.lines.count() == len(statements.draft(rerun, None).lines)


def test_a_refund_after_close_is_a_credit_note_on_the_next_statement(catalog):
    from apps.usage import books, services

    organization = OrganizationFactory(plan=catalog)
    this_month, next_month = this_period(organization)
    start, end = period_bounds(this_month - timedelta(days=1), MONTH, organization.tz)
    charge = record(organization, "calls3", units=D(3000), at=start + timedelta(days=2))
    assert charge.billing_method == "payment_charge" and charge.status == "pending"
    first = statements.close_period(organization=organization, period_start=start, period_end=end)
    frozen = list(first.lines.values())

    services.refund_billing(organization=organization, billing_id=charge.billing_id,
                            actor="staff", reason="goodwill")  # fmt: skip
    second = statements.close_period(
        organization=organization, period_start=this_month, period_end=next_month,
        now=next_month + timedelta(hours=1),
    )  # fmt: skip

    (note,) = second.lines.filter(kind=StatementLine.Kind.CREDIT_NOTE)
    assert note.amount_unrounded == -charge.total_amount
    assert second.total_due == note.amount  # nothing else this month
    assert list(first.lines.values()) == frozen  # the closed statement is untouched
    assert books.statements_cover_records() == []


def test_a_minimum_charge_tops_the_period_up(plan):
    product = ProductFactory(code="minimum-calls")
    price(product, unit_price="0.01", minimum_charge=D(5))
    organization = OrganizationFactory(plan=plan)
    record(organization, "minimum-calls", units=D(120))  # $1.20 of a $5.00 minimum

    statement = close(organization)

    (top,) = statement.lines.filter(kind=StatementLine.Kind.MINIMUM)
    assert top.amount == D("3.80") and statement.total_due == D(5)
    assert statement.minimums == D("3.80")


def test_the_close_command_refuses_what_it_cannot_close(catalog):
    from io import StringIO

    from django.core.management import CommandError, call_command

    organization = OrganizationFactory(plan=catalog, slug="cmd-org")
    this_month, _ = this_period(organization)
    last = (this_month - timedelta(days=1)).astimezone(organization.tz)
    with pytest.raises(CommandError, match="No organisation"):
        call_command("close_period", organization="nobody", month=f"{last:%Y-%m}")
    with pytest.raises(CommandError, match="not ended"):
        call_command("close_period", organization="cmd-org",
                     month=f"{this_month.astimezone(organization.tz):%Y-%m}")  # fmt: skip
    assert not Statement.objects.exists()
    out = StringIO()
    call_command("close_period", organization="cmd-org", month=f"{last:%Y-%m}", stdout=out)
    assert "Final" in out.getvalue()
    with pytest.raises(CommandError, match="final"):
        call_command("close_period", organization="cmd-org", month=f"{last:%Y-%m}")
    assert Statement.objects.count() == 1


def test_volume_pricing_prices_every_unit_of_the_period_at_its_final_tier(plan):
    product = ProductFactory(code="volume-calls")
    price(product, pricing_model=PricingModel.VOLUME,
          tiers=[TierSpec(D(100), D("0.10")), TierSpec(None, D("0.05"))])  # fmt: skip
    organization = OrganizationFactory(plan=plan)
    record(organization, "volume-calls", units=D(90))  # $9.00 at the first tier
    record(organization, "volume-calls", units=D(20))  # 110 units: every one at $0.05 now

    statement = close(organization)

    usage = statement.lines.get(kind=StatementLine.Kind.USAGE)
    (credit,) = statement.lines.filter(kind=StatementLine.Kind.VOLUME_CREDIT)
    assert usage.amount == D("9.00")  # the crossing event was not negative
    assert credit.amount == D("-3.50") and statement.total_due == D("5.50")  # 110 x $0.05


def test_a_paid_charge_refunded_after_close_goes_back_to_the_wallet_not_a_credit_note(catalog):
    from apps.customers import wallets as wallet_service
    from apps.usage import services
    from apps.usage.models import BillingRecord

    organization = OrganizationFactory(plan=catalog)
    this_month, next_month = this_period(organization)
    start, end = period_bounds(this_month - timedelta(days=1), MONTH, organization.tz)
    charge = record(organization, "calls3", units=D(3000), at=start + timedelta(days=2))
    statements.close_period(organization=organization, period_start=start, period_end=end)
    services.transition(record=BillingRecord.objects.get(pk=charge.pk), to_status="completed",
                        actor="stripe", reason="invoice paid")  # fmt: skip
    services.refund_billing(organization=organization, billing_id=charge.billing_id,
                            actor="staff", reason="goodwill")  # fmt: skip
    assert wallet_service.wallet_balance(organization) == charge.total_amount  # refunded there

    second = statements.close_period(
        organization=organization, period_start=this_month, period_end=next_month,
        now=next_month + timedelta(hours=1),
    )  # fmt: skip
    assert not second.lines.filter(kind=StatementLine.Kind.CREDIT_NOTE).exists()


def test_a_statement_reads_its_records_as_of_its_freeze(catalog):
    """A charge voided after the freeze but before the lines are built is counted by this
    statement as it stood, and credited once, on the next one."""
    from apps.usage import books, services

    organization = OrganizationFactory(plan=catalog)
    this_month, next_month = this_period(organization)
    start, end = period_bounds(this_month - timedelta(days=1), MONTH, organization.tz)
    charge = record(organization, "calls3", units=D(3000), at=start + timedelta(days=2))
    statements.close_period(organization=organization, period_start=start, period_end=end,
                            until="freeze")  # fmt: skip
    services.refund_billing(organization=organization, billing_id=charge.billing_id,
                            actor="staff", reason="goodwill")  # fmt: skip
    first = statements.close_period(organization=organization, period_start=start, period_end=end)

    assert first.status == Statement.Status.FINAL, first.mismatch  # no false mismatch
    assert first.usage_total == round_money(charge.total_amount, "USD")
    assert not first.lines.filter(kind=StatementLine.Kind.REFUND).exists()
    second = statements.close_period(
        organization=organization, period_start=this_month, period_end=next_month,
        now=next_month + timedelta(hours=1),
    )  # fmt: skip
    (note,) = second.lines.filter(kind=StatementLine.Kind.CREDIT_NOTE)
    assert note.amount_unrounded == -charge.total_amount
    assert books.statements_cover_records() == []


def test_the_plan_and_base_fee_are_those_of_the_period_not_of_the_close(catalog):
    from apps.pricing.models import Plan

    organization = OrganizationFactory(plan=catalog, subscription_status="active")
    this_month, _ = this_period(organization)
    start, end = period_bounds(this_month - timedelta(days=1), MONTH, organization.tz)
    # Its state during the period, as the audit history has it (the creation, dated then).
    organization.history.update(history_date=start + timedelta(days=1))
    bigger = Plan.objects.create(code="bigger", name="Bigger", base_fee=D(999), currency="USD")
    organization.plan = bigger
    organization.save()  # changed at renewal, before the close

    statement = statements.close_period(organization=organization, period_start=start,
                                        period_end=end)  # fmt: skip
    assert statement.plan == catalog and statement.base_fee == catalog.base_fee
