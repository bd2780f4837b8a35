import contextlib
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from apps.budgets import services, tasks
from apps.budgets.models import Alert, AlertDelivery, Budget, BudgetPeriod, NotificationChannel
from tests.http import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 that records the JSON posts it gets."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_port}/alerts", received
    server.shutdown()


def test_crossing_80_percent_alerts_once_by_apprise_and_by_email(
    api_client, org, key, calls, receiver, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    url, received = receiver
    NotificationChannel.objects.create(organization=org, kind="apprise", target=url)
    NotificationChannel.objects.create(organization=org, kind="email", target="ops@acme.example")
    Budget.objects.create(organization=org, name="Monthly", limit=D(10), currency="USD",
                          is_hard=False)  # fmt: skip

    api_client.post(
        "/api/v1/usage/record",
        {"product_id": "calls", "usage_amount": 850},
        format="json",
        **bearer(key),
    )  # fmt: skip — $8.50: 85 %
    tasks.sweep_budgets.delay()
    tasks.sweep_budgets.delay()

    assert len(received) == 1
    assert "reached 80%" in received[0]["title"]
    assert "8.50 of 10.00 USD" in received[0]["message"]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@acme.example"]
    assert Alert.objects.get().threshold == 80
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_failing_channel_does_not_block_the_others(org, calls, settings, api_client, key):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    NotificationChannel.objects.create(organization=org, kind="apprise",
                                       target="json://127.0.0.1:1/nobody")  # fmt: skip
    NotificationChannel.objects.create(organization=org, kind="email", target="ops@acme.example")
    Budget.objects.create(organization=org, name="b", limit=D(1), currency="USD", is_hard=False)
    api_client.post("/api/v1/usage/record", {"product_id": "calls", "usage_amount": 100},
                    format="json", **bearer(key))  # fmt: skip

    for delivery_id in services.raise_alerts():
        with contextlib.suppress(services.DeliveryFailed):
            services.deliver(delivery_id=delivery_id)

    for failed in AlertDelivery.objects.filter(channel__kind="apprise"):
        assert failed.status == "failed" and failed.attempts == 1 and failed.last_error
    assert AlertDelivery.objects.filter(channel__kind="email", status="sent").count() == 2
    assert len(mail.outbox) == 2  # 80 % and 100 %


def test_the_period_roll_over_opens_one_period_per_budget_however_often_it_runs(org):
    budget = Budget.objects.create(organization=org, name="daily", limit=D(5), currency="USD",
                                   period="daily")  # fmt: skip
    noon = datetime(2026, 11, 20, 12, tzinfo=UTC)

    assert services.open_current_periods(at=noon) == 1
    assert services.open_current_periods(at=noon) == 0
    # beat was down for two days: the next run opens today's period, once
    later = noon + timedelta(days=2)
    assert services.open_current_periods(at=later) == 1
    assert services.open_current_periods(at=later) == 0
    open_now = [p for p in BudgetPeriod.objects.filter(budget=budget)
                if p.starts_at <= later < p.ends_at]  # fmt: skip
    assert len(open_now) == 1
    assert BudgetPeriod.objects.filter(budget=budget).count() == 2


def test_a_concurrent_or_repeated_sweep_adds_no_second_alert(org, calls, api_client, key):
    Budget.objects.create(organization=org, name="b", limit=D(1), currency="USD", is_hard=False)
    api_client.post("/api/v1/usage/record", {"product_id": "calls", "usage_amount": 90},
                    format="json", **bearer(key))  # fmt: skip

    services.raise_alerts()
    services.raise_alerts()

    assert Alert.objects.count() == 1


def test_channels_are_validated(org):
    with pytest.raises(ValidationError):
        NotificationChannel(organization=org, kind="email", target="not-an-address").full_clean()
    with pytest.raises(ValidationError):
        NotificationChannel(organization=org, kind="apprise", target="nonsense").full_clean()
    NotificationChannel(organization=org, kind="apprise", target="json://127.0.0.1/x").full_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_roll_overs_each_count_only_the_periods_they_opened(org):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    for n in range(30):
        Budget.objects.create(organization=org, name=f"b{n}", limit=D(5), currency="USD",
                              period="daily")  # fmt: skip
    noon = datetime(2026, 11, 20, 12, tzinfo=UTC)
    start = threading.Barrier(4)

    def run(_):
        start.wait()
        try:
            return services.open_current_periods(at=noon)
        finally:
            connection.close()

    for _ in range(5):
        BudgetPeriod.objects.all().delete()
        with ThreadPoolExecutor(max_workers=4) as pool:
            opened = list(pool.map(run, range(4)))
        assert sum(opened) == 30 == BudgetPeriod.objects.count(), opened
