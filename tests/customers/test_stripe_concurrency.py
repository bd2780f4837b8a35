"""Two workers handed the same Stripe event at once apply it once (PostgreSQL)."""

import json
import threading
from decimal import Decimal

import pytest
from django.db import connection
from djstripe.models import Event, WebhookEventTrigger

from apps.customers import billing, wallets
from apps.customers.webhooks import process_webhook

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_same_top_up_event_processed_by_four_workers_at_once_credits_once(
    fake_stripe, webhook_endpoint, organization
):
    url = billing.checkout_top_up(
        organization, Decimal("40.00"), success_url="https://x/ok", cancel_url="https://x/no"
    )
    fake_stripe.complete_checkout(url.rsplit("/", 1)[1])
    event = fake_stripe.events_of("checkout.session.completed")[0]
    # Four deliveries of one event, stored by the webhook view, not yet processed.
    triggers = [
        WebhookEventTrigger.objects.create(
            headers={}, body=json.dumps(event), remote_ip="127.0.0.1", valid=True,
            webhook_endpoint=webhook_endpoint,
        ).pk
        for _ in range(4)
    ]  # fmt: skip
    barrier = threading.Barrier(len(triggers))
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
        thread.join()

    assert errors == []
    assert Event.objects.filter(id=event["id"]).count() == 1
    assert wallets.wallet_balance(organization) == Decimal("40.00")
    assert organization.wallet.entries.count() == 1
    assert WebhookEventTrigger.objects.filter(processed=True).count() == 4
