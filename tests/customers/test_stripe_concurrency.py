"""Two workers handed the same Stripe event at once apply it once (PostgreSQL)."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from djstripe.models import Event, WebhookEventTrigger

from apps.customers import billing, wallets
from apps.customers.webhooks import process_webhook
from tests.stripe_webhooks import CHECKOUT_URLS, session_id, stored_delivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_same_top_up_event_processed_by_four_workers_at_once_credits_once(
    fake_stripe, webhook_endpoint, organization
):
    url = billing.checkout_top_up(organization, Decimal("40.00"), **CHECKOUT_URLS)
    fake_stripe.complete_checkout(session_id(url))
    event = fake_stripe.events_of("checkout.session.completed")[0]
    # Four deliveries of one event, stored by the webhook view, not yet processed.
    triggers = [stored_delivery(webhook_endpoint, event).pk for _ in range(4)]
    barrier = threading.Barrier(len(triggers), timeout=30)
    errors = []

    def work(trigger_id):
        try:
            barrier.wait()
            process_webhook.run(trigger_id)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(pk,)) for pk in triggers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Event.objects.filter(id=event["id"]).count() == 1
    assert wallets.wallet_balance(organization) == Decimal("40.00")
    assert organization.wallet.entries.count() == 1
    assert WebhookEventTrigger.objects.filter(processed=True).count() == 4
