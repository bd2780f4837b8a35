"""Postpaid usage reported to Stripe's meters: each unit once, however often it runs."""

from decimal import Decimal as D
from io import StringIO

import pytest
import stripe
from django.core.management import call_command

from apps.customers import billing
from apps.usage import stripe_usage
from apps.usage.models import BillingRecord, StripeUsageReport
from apps.usage.tasks import report_usage_to_stripe
from tests.http import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def metered(fake_stripe, org, calls, llm):
    """The catalog on Stripe and the organisation a Stripe customer."""
    call_command("sync_stripe_catalog", stdout=StringIO())
    calls.refresh_from_db()
    llm.refresh_from_db()
    customer = billing.ensure_customer(org)
    return customer


def record(api_client, key, body, event_id):
    response = api_client.post(
        "/api/v1/usage/record", {**body, "event_id": event_id}, format="json", **bearer(key)
    )
    assert response.status_code == 201, response.content
    return response.json()


def postpaid_units() -> int:
    total = sum(
        r.total_amount for r in BillingRecord.objects.filter(billing_method="payment_charge")
    )
    return stripe_usage.meter_units(total)


def test_usage_reported_twice_for_the_same_period_reports_each_unit_once(
    api_client, key, metered, fake_stripe, calls, llm
):
    for n in range(5):
        record(api_client, key, {"product_id": "calls", "usage_amount": 7, "user_id": "u"}, f"c{n}")
    usage = {"input_tokens": 4000, "output_tokens": 1500}
    record(api_client, key, {"product_id": "llm", "usage_details": usage}, "l1")

    first = report_usage_to_stripe.delay().get()
    second = report_usage_to_stripe.delay().get()

    assert first["events"] == 2 and second == {"events": 0, "units": 0, "recovered": 0}
    assert fake_stripe.metered_total(calls.stripe_meter_event_name, metered.id) == (
        stripe_usage.meter_units(D("0.35"))
    )
    sent = fake_stripe.metered_total(calls.stripe_meter_event_name, metered.id)
    sent += fake_stripe.metered_total(llm.stripe_meter_event_name, metered.id)
    assert sent == postpaid_units() == first["units"]
    assert StripeUsageReport.objects.count() == 2


def test_usage_arriving_after_a_report_is_sent_as_the_difference(
    api_client, key, metered, fake_stripe, calls
):
    record(api_client, key, {"product_id": "calls", "usage_amount": 100}, "a")
    stripe_usage.report_all()
    record(api_client, key, {"product_id": "calls", "usage_amount": 50}, "b")

    run = stripe_usage.report_all()

    assert run.events == 1 and run.units == stripe_usage.meter_units(D("0.50"))
    assert fake_stripe.metered_total(calls.stripe_meter_event_name, metered.id) == (
        stripe_usage.meter_units(D("1.50"))
    )


def test_a_run_that_stopped_after_stripe_took_the_event_does_not_send_it_twice(
    api_client, key, metered, fake_stripe, calls, org
):
    record(api_client, key, {"product_id": "calls", "usage_amount": 100}, "a")
    day = BillingRecord.objects.get().occurred_at.astimezone(org.tz).date()
    # The interrupted run, retried after Stripe's idempotency keys expired: Stripe has the
    # event, the portal has no record of it, the identifier is refused as a duplicate.
    identifier = f"bp-{org.pk}-{calls.pk}-{day:%Y%m%d}-0"
    stripe.billing.MeterEvent.create(
        api_key=fake_stripe.secret_key,
        event_name=calls.stripe_meter_event_name,
        identifier=identifier,
        payload={"stripe_customer_id": metered.id, "value": "1000000"},
    )

    run = stripe_usage.report_all()

    assert run.recovered == 1
    assert fake_stripe.metered_total(calls.stripe_meter_event_name, metered.id) == 1_000_000
    assert StripeUsageReport.objects.get().identifier == identifier


def test_a_retry_within_stripes_idempotency_window_is_answered_from_the_first_request(
    api_client, key, metered, fake_stripe, calls, org
):
    record(api_client, key, {"product_id": "calls", "usage_amount": 100}, "a")
    day = BillingRecord.objects.get().occurred_at.astimezone(org.tz).date()
    identifier = f"bp-{org.pk}-{calls.pk}-{day:%Y%m%d}-0"
    # The interrupted run sent it as the portal sends it: idempotency key = identifier.
    stripe.billing.MeterEvent.create(
        api_key=fake_stripe.secret_key,
        event_name=calls.stripe_meter_event_name,
        identifier=identifier,
        payload={"stripe_customer_id": metered.id, "value": "1000000"},
        idempotency_key=identifier,
    )

    run = stripe_usage.report_all()

    assert run.events == 1
    assert fake_stripe.metered_total(calls.stripe_meter_event_name, metered.id) == 1_000_000
    assert StripeUsageReport.objects.get().identifier == identifier


def test_charges_paid_from_the_wallet_or_voided_before_the_report_are_not_sent(
    api_client, key, metered, fake_stripe, calls, org
):
    from apps.customers import wallets
    from apps.usage import services
    from apps.usage.models import DailyUsage

    ids = [
        record(api_client, key, {"product_id": "calls", "usage_amount": 100}, f"e{n}")["billing_id"]
        for n in range(3)
    ]
    wallets.top_up_wallet(organization=org, amount=D(5), actor="t", reason="t")
    services.process_billing(
        organization=org, billing_id=ids[0], billing_method="wallet_deduction", actor="t"
    )
    services.refund_billing(organization=org, billing_id=ids[1], actor="t", reason="voided")

    run = stripe_usage.report_all()

    assert run.units == stripe_usage.meter_units(D("1.00"))  # only the third is invoiced
    rollup = {row.billing_method: (row.cost, row.event_count) for row in DailyUsage.objects.all()}
    assert rollup == {"payment_charge": (D("1.00"), 1), "wallet_deduction": (D("1.00"), 1)}


def test_prepaid_usage_is_not_reported(api_client, key, metered, fake_stripe, calls, org):
    from apps.customers import wallets

    wallets.top_up_wallet(organization=org, amount=D(10), actor="t", reason="t")
    record(api_client, key, {"product_id": "calls", "usage_amount": 100}, "a")

    run = stripe_usage.report_all()

    assert run.events == 0 and fake_stripe.meter_events == []


def test_without_stripe_nothing_is_reported(settings, api_client, key, metered, fake_stripe):
    record(api_client, key, {"product_id": "calls", "usage_amount": 100}, "a")
    settings.STRIPE_ENABLED = False

    assert stripe_usage.report_all().events == 0
    assert fake_stripe.meter_events == []


# --- invoices settle the period's postpaid records ------------------------------------------


@pytest.fixture
def subscribed(metered, fake_stripe, org, plan):
    plan.refresh_from_db()
    url = billing.checkout_subscription(
        org, plan, success_url="https://x/ok", cancel_url="https://x/no"
    )
    session = fake_stripe.complete_checkout(url.rsplit("/", 1)[1])
    return session["subscription"]


def deliver_from(client, endpoint, fake, since):
    from tests.stripe_webhooks import deliver_processed

    deliver_processed(client, endpoint, fake.events[since:])


def test_a_paid_invoice_completes_the_periods_postpaid_records(
    api_client, client, key, subscribed, fake_stripe, webhook_endpoint
):
    from tests.fake_stripe import invoice

    for n in range(3):
        record(api_client, key, {"product_id": "calls", "usage_amount": 10}, f"e{n}")
    stripe_usage.report_all()
    since = len(fake_stripe.events)

    paid = invoice(fake_stripe, subscribed, paid=True)
    deliver_from(client, webhook_endpoint, fake_stripe, since)
    deliver_from(client, webhook_endpoint, fake_stripe, since)  # every event twice

    records = BillingRecord.objects.filter(billing_method="payment_charge")
    assert {r.status for r in records} == {"completed"}
    for r in records:
        moves = [(e.from_status, e.to_status, e.actor) for e in r.events.order_by("pk")]
        assert moves == [("", "pending", f"api:{key.rsplit('_', 1)[0]}"),
                         ("pending", "completed", "stripe")]  # fmt: skip
    assert paid["amount_due"] >= 30  # the meters' 30 cents are on Stripe's invoice


def test_a_failed_invoice_payment_fails_the_records_and_tells_the_billing_contact(
    api_client,
    client,
    key,
    subscribed,
    fake_stripe,
    webhook_endpoint,
    org,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    from tests.fake_stripe import invoice

    record(api_client, key, {"product_id": "calls", "usage_amount": 10}, "e1")
    since = len(fake_stripe.events)

    with django_capture_on_commit_callbacks(execute=True):
        invoice(fake_stripe, subscribed, paid=False)
        deliver_from(client, webhook_endpoint, fake_stripe, since)

    assert BillingRecord.objects.get(billing_method="payment_charge").status == "failed"
    assert [m.to for m in mailoutbox] == [[org.billing_email]]
    assert "Payment failed" in mailoutbox[0].subject


def test_a_day_in_which_a_period_starts_is_reported_in_two_parts_at_that_instant(
    api_client, key, metered, fake_stripe, org, plan, calls
):
    """The subscription renews at 14:37 on a day: what occurred before is stamped before
    14:37 (billed by the invoice of the period that ends then), what occurred after is
    stamped after it (billed by the next one), as settlement counts the records."""
    from datetime import datetime, time, timedelta

    from django.utils import timezone

    tz = org.tz
    day = timezone.localtime(timezone.now(), tz).date() - timedelta(days=2)
    anchor = datetime.combine(day, time(14, 37), tzinfo=tz)
    fake_stripe.clock = int(anchor.timestamp())  # Stripe's clock when the period starts
    plan.refresh_from_db()
    url = billing.checkout_subscription(
        org, plan, success_url="https://x/ok", cancel_url="https://x/no"
    )
    session = fake_stripe.complete_checkout(url.rsplit("/", 1)[1])
    billing.follow_subscription(org, session["subscription"])
    summary = billing.subscription_summary(org)
    assert summary["current_period_start"] == int(anchor.timestamp())

    at = lambda hour: datetime.combine(day, time(hour), tzinfo=tz).isoformat()  # noqa: E731
    record(
        api_client, key, {"product_id": "calls", "usage_amount": 100, "occurred_at": at(10)}, "a"
    )
    record(api_client, key, {"product_id": "calls", "usage_amount": 30, "occurred_at": at(13)}, "b")
    record(api_client, key, {"product_id": "calls", "usage_amount": 7, "occurred_at": at(16)}, "c")

    run = stripe_usage.report_all()
    events = sorted(
        (e for e in fake_stripe.meter_events if e["event_name"] == calls.stripe_meter_event_name),
        key=lambda e: e["timestamp"],
    )
    assert run.events == len(events) == 2
    before, after = events
    assert int(before["payload"]["value"]) == stripe_usage.meter_units(D("1.30"))  # 130 calls
    assert int(after["payload"]["value"]) == stripe_usage.meter_units(D("0.07"))
    assert int(before["timestamp"]) < anchor.timestamp() <= int(after["timestamp"])
    parts = {r.segment_start for r in StripeUsageReport.objects.filter(product=calls)}
    assert parts == {None, anchor}

    # Late usage for the part after the anchor is sent to that part, once.
    record(api_client, key, {"product_id": "calls", "usage_amount": 5, "occurred_at": at(18)}, "d")
    stripe_usage.report_all()
    stripe_usage.report_all()
    late = [e for e in fake_stripe.meter_events if e["event_name"] == calls.stripe_meter_event_name]
    assert len(late) == 3
    assert int(late[-1]["payload"]["value"]) == stripe_usage.meter_units(D("0.05"))
    assert int(late[-1]["timestamp"]) >= anchor.timestamp()


def test_the_books_compare_each_stripe_invoice_line_with_the_periods_charges(
    api_client, client, key, subscribed, fake_stripe, webhook_endpoint, calls
):
    from apps.usage.books import stripe_invoices
    from tests.fake_stripe import invoice

    for n in range(3):
        record(api_client, key, {"product_id": "calls", "usage_amount": 10}, f"b{n}")
    stripe_usage.report_all()
    since = len(fake_stripe.events)
    invoice(fake_stripe, subscribed, paid=True)
    deliver_from(client, webhook_endpoint, fake_stripe, since)
    assert stripe_invoices() == []  # 30 cents on both sides

    BillingRecord.objects.filter(billing_method="payment_charge", product=calls).update(
        total_amount=D("0.50")
    )  # planted: the portal now says $1.50
    (difference,) = stripe_invoices()
    assert difference.check == "stripe invoice" and (difference.expected, difference.found) == (
        "150",
        "30",
    )


def test_a_send_that_fails_keeps_the_record_of_the_events_already_sent(
    api_client, key, metered, fake_stripe, calls, llm
):
    record(api_client, key, {"product_id": "calls", "usage_amount": 100}, "f1")
    record(api_client, key, {"product_id": "llm", "dimensions": {"input_tokens": 5000}}, "f2")
    assert calls.pk < llm.pk  # calls is sent first
    llm_meter = next(k for k, o in fake_stripe.objects.items()
                     if o.get("object") == "billing.meter"
                     and o["event_name"] == llm.stripe_meter_event_name)  # fmt: skip
    fake_stripe.objects[llm_meter]["event_name"] = "renamed"  # Stripe refuses the second event

    with pytest.raises(stripe.InvalidRequestError):
        stripe_usage.report_all()

    assert list(StripeUsageReport.objects.values_list("product_id", flat=True)) == [calls.pk]
