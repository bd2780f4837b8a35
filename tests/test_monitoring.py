"""Operations: request ids on responses and log lines (and the tasks a request enqueues),
Prometheus metrics that move with the traffic, per-key request counts for staff, secrets
masked in the logs, and the operational parts of the detailed health report."""

import io
import logging
import re
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.core import logs
from apps.customers import key_stats
from billing_portal import beat
from billing_portal.celery import app as celery_app
from tests.http import bearer, error_code

pytestmark = pytest.mark.django_db


@contextmanager
def log_lines():
    """What the portal's console handler would write, as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RequestIdFilter())
    handler.addFilter(logs.RedactFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- the request id -------------------------------------------------------------------------


def test_every_response_carries_a_request_id_given_or_generated(client):
    given = client.get("/health", HTTP_X_REQUEST_ID="req-abc.123")
    generated = client.get("/health")
    unsafe = client.get("/health", HTTP_X_REQUEST_ID="bad id\nwith newline")
    page = client.get("/accounts/login/")

    assert given["X-Request-ID"] == "req-abc.123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", page["X-Request-ID"])


@pytest.mark.django_db(transaction=True)
def test_the_request_id_is_in_the_requests_log_lines_and_its_tasks(
    api_client, key, calls, org, settings
):
    from apps.budgets.models import Budget

    settings.SLOW_REQUEST_MS = 0  # every request is "slow": each logs its timing
    Budget.objects.create(organization=org, name="b", limit=D(1), currency="USD", is_hard=False)
    with log_lines() as stream:
        response = api_client.post(
            "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 90}, format="json",
            HTTP_X_REQUEST_ID="trace-4711", **bearer(key),
        )  # fmt: skip
    assert response.status_code == 201, response.content
    lines = stream.getvalue().splitlines()
    slow = [line for line in lines if "Slow request" in line]
    assert slow and all("[trace-4711]" in line for line in slow)
    assert "api/v1/usage/record answered 201" in slow[0]
    # The budget crossed 80 %: the sweep task ran (in-process here) under the same id.
    task = [line for line in lines if "apps.budgets.tasks.sweep_budgets" in line]
    assert task and all("[trace-4711]" in line for line in task)
    assert not [line for line in lines if "[trace-4711]" not in line and "Task" in line]


# --- /metrics -------------------------------------------------------------------------------


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-secret-123"

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-123")

    assert missing.status_code == 401 and error_code(missing) == "not_authenticated"
    assert wrong.status_code == 403 and error_code(wrong) == "permission_denied"
    assert right.status_code == 200 and b"billing_http_requests_total" in right.content


def test_without_a_token_metrics_are_for_internal_addresses_only(client, settings):
    settings.METRICS_TOKEN = ""

    outside = client.get("/metrics", REMOTE_ADDR="8.8.8.8")
    inside = client.get("/metrics", REMOTE_ADDR="10.1.2.3")

    assert outside.status_code == 403 and error_code(outside) == "permission_denied"
    assert inside.status_code == 200


def test_the_counters_move_with_the_traffic(client, api_client, key, calls):
    before = scrape(client)

    first = api_client.post(
        "/api/v1/usage/record",
        {"product_id": "calls", "usage_amount": 5, "event_id": "m-1"},
        format="json", **bearer(key),
    )  # fmt: skip
    again = api_client.post(
        "/api/v1/usage/record",
        {"product_id": "calls", "usage_amount": 5, "event_id": "m-1"},
        format="json", **bearer(key),
    )  # fmt: skip
    unknown = api_client.post(
        "/api/v1/usage/record", {"product_id": "nope", "usage_amount": 5}, format="json",
        **bearer(key),
    )  # fmt: skip
    after = scrape(client)

    assert first.status_code == 201 and not first.json()["duplicate"]
    assert again.json()["duplicate"] and unknown.status_code >= 400
    events = "billing_usage_events_total"
    assert (
        value(after, events, outcome="accepted", reason="")
        - value(before, events, outcome="accepted", reason="")
        == 1
    )
    assert (
        value(after, events, outcome="duplicate", reason="")
        - value(before, events, outcome="duplicate", reason="")
        == 1
    )
    refused = error_code(unknown)
    assert (
        value(after, events, outcome="rejected", reason=refused)
        - value(before, events, outcome="rejected", reason=refused)
        == 1
    )
    requests = "billing_http_requests_total"
    route = {"method": "POST", "route": "api/v1/usage/record"}
    assert (
        value(after, requests, **route, status="201")
        - value(before, requests, **route, status="201")
        == 1
    )
    assert (
        value(after, "billing_http_request_duration_seconds_count", **route)
        - value(before, "billing_http_request_duration_seconds_count", **route)
        == 3
    )
    for gauge in ("billing_beat_heartbeat_age_seconds", "billing_webhook_backlog",
                  "billing_last_close_age_seconds"):  # fmt: skip
        assert (gauge, ()) in after


def test_budget_refusals_and_task_runs_are_counted(client, api_client, key, calls, org):
    from apps.budgets.models import Budget

    Budget.objects.create(organization=org, name="hard", limit=D("0.10"), currency="USD",
                          is_hard=True)  # fmt: skip
    before = scrape(client)

    refused = api_client.post(
        "/api/v1/usage/record", {"product_id": "calls", "usage_amount": 500}, format="json",
        **bearer(key),
    )  # fmt: skip
    from apps.customers import tasks

    tasks.expire_credits.delay()
    after = scrape(client)

    assert error_code(refused) == "budget_exceeded"
    name = "billing_budget_refusals_total"
    assert (
        value(after, name, code="budget_exceeded") - value(before, name, code="budget_exceeded")
        == 1
    )
    task = {"task": "apps.customers.tasks.expire_credits", "outcome": "success"}
    assert (
        value(after, "billing_celery_tasks_total", **task)
        - value(before, "billing_celery_tasks_total", **task)
        == 1
    )


def test_webhooks_are_counted_received_and_processed(
    client, webhook_endpoint, fake_stripe, organization
):
    from apps.customers import billing
    from tests.stripe_webhooks import deliver

    billing.ensure_customer(organization)
    (event,) = fake_stripe.events_of("customer.created")
    before = scrape(client)
    response = deliver(client, webhook_endpoint, event)
    after = scrape(client)

    assert response.status_code == 200
    for outcome in ("received", "processed"):
        name = "billing_webhook_events_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == 1
    lag = "billing_webhook_processing_lag_seconds_count"
    assert value(after, lag) - value(before, lag) == 1


# --- per-key counts for staff ---------------------------------------------------------------


def test_staff_see_each_keys_requests_and_error_rate(admin_client, api_client, key, calls):
    from apps.customers.models import ApiKey

    for amount in (1, 2, 3):
        api_client.post("/api/v1/usage/record", {"product_id": "calls", "usage_amount": amount},
                        format="json", **bearer(key))  # fmt: skip
    api_client.post("/api/v1/usage/record", {"product_id": "calls", "usage_amount": -1},
                    format="json", **bearer(key))  # fmt: skip
    api_key = ApiKey.objects.get(prefix=ApiKey.prefix_of(key))

    assert key_stats.key_requests([api_key.pk]) == {api_key.pk: (4, 1)}
    page = admin_client.get("/admin/customers/apikey/").content.decode()
    assert "Requests (24 h)" in page and "1 (25.0 %)" in page
    change = admin_client.get(f"/admin/customers/apikey/{api_key.pk}/change/").content.decode()
    assert "1 (25.0 %)" in change


# --- secrets never logged -------------------------------------------------------------------


def test_on_redis_a_request_and_its_key_counts_take_one_round_trip(
    api_client, key, calls, monkeypatch
):
    """The throttle's round trip also counts the request for its key; only an error
    answer needs one more (its error count)."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache
    from redis.connection import AbstractConnection

    from apps.customers.models import ApiKey

    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the per-key counts share the throttle's round trip on Redis only")
    sent = []
    real = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return real(self, command, check_health)

    post = {"product_id": "calls", "usage_amount": 1}
    # (The first request reads the cache generations, looked up again once a second.)
    api_client.post("/api/v1/usage/record", post, format="json", **bearer(key))
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    accepted = api_client.post("/api/v1/usage/record", post, format="json", **bearer(key))
    round_trips = len(sent)
    refused = api_client.post("/api/v1/usage/record", {**post, "usage_amount": -1},
                              format="json", **bearer(key))  # fmt: skip
    api_key = ApiKey.objects.get(prefix=ApiKey.prefix_of(key))

    assert accepted.status_code == 201 and refused.status_code == 400
    assert round_trips == 1
    assert len(sent) - round_trips == 2
    assert key_stats.key_requests([api_key.pk]) == {api_key.pk: (3, 1)}


def test_secrets_are_masked_in_log_lines():
    raw = "bp_org_AbCdEf12_" + "x" * 40
    text = (
        f"key {raw} stripe sk_test_51HfakeFAKEfake whsec_abcdefghijklmnop "
        "card 4242 4242 4242 4242 and 4000-0566-5566-5556, order 1234567890123 "
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz"
    )

    masked = logs.redact(text)

    assert raw not in masked and "bp_org_AbCdEf12_[redacted]" in masked
    assert "sk_test_[redacted]" in masked and "whsec_[redacted]" in masked
    assert "4242" not in masked and "5556" not in masked
    assert "1234567890123" in masked  # not a card number (fails the Luhn check)
    request_id = "6eb5839858124239bbca97d481e5c98b"  # Luhn-valid digits inside a hex id
    assert logs.redact(f"[{request_id}] Forbidden") == f"[{request_id}] Forbidden"
    assert "abcdefghijklmnopqrstuvwxyz" not in masked


def test_the_check_of_written_logs_finds_a_planted_key_and_passes_a_masked_one():
    raw = "bp_svc_Zz9Yy8Xx_" + "A1" * 20
    written = f"INFO x [-] fine\nWARNING x [-] key {raw} slipped\n"

    assert logs.leaks(written) == [f"WARNING x [-] key {raw} slipped"]
    assert logs.leaks(logs.redact(written)) == []


def test_a_key_in_a_failed_requests_log_line_is_masked(api_client, key, settings):
    settings.SLOW_REQUEST_MS = 0
    logger = logging.getLogger("billing_portal.tests")
    with log_lines() as stream:
        logger.warning("Refused the key %s", key)
        try:
            raise ValueError(f"boom with {key}")
        except ValueError:
            logger.exception("Failed")
    text = stream.getvalue()
    assert key not in text
    assert text.count("[redacted]") >= 2


# --- the detailed health report -------------------------------------------------------------


def test_detailed_health_reports_worker_beat_webhooks_and_close(client):
    body = client.get("/health/detailed").json()

    assert set(body["dependencies"]) == {
        *("database", "cache", "broker"),
        *("celery_worker", "celery_beat", "stripe_webhooks", "monthly_close"),
    }
    assert body["status"] == "healthy"
    for name in ("stripe_webhooks", "monthly_close"):
        assert body["dependencies"][name]["status"] == "healthy"


def test_without_workers_or_beat_the_report_is_degraded(client):
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        body = client.get("/health/detailed").json()
        beat.stamp()
        ticking = client.get("/health/detailed").json()
    finally:
        celery_app.conf.task_always_eager = previous

    assert body["status"] == "degraded"
    assert body["dependencies"]["celery_worker"]["status"] == "degraded"
    assert "error" in body["dependencies"]["celery_worker"]
    assert body["dependencies"]["celery_beat"]["error"] == "no heartbeat from celery-beat yet"
    assert ticking["dependencies"]["celery_beat"]["status"] == "healthy"
    assert ticking["dependencies"]["celery_beat"]["heartbeat_age_seconds"] < 5


def test_a_webhook_backlog_and_a_stopped_close_degrade_the_report(client, organization):
    from djstripe import models as djstripe

    from apps.usage.models import Statement

    trigger = djstripe.WebhookEventTrigger.objects.create(
        remote_ip="127.0.0.1", body="{}", headers={}, valid=True, processed=False
    )
    djstripe.WebhookEventTrigger.objects.filter(pk=trigger.pk).update(
        created=timezone.now() - timedelta(minutes=20)
    )
    now = timezone.now()
    Statement.objects.create(
        organization=organization, period_start=now - timedelta(days=30), period_end=now,
        currency="USD", status=Statement.Status.MISMATCH,
    )  # fmt: skip

    body = client.get("/health/detailed").json()

    assert body["status"] == "degraded"
    webhooks = body["dependencies"]["stripe_webhooks"]
    assert webhooks["status"] == "degraded" and webhooks["backlog"] == 1
    assert webhooks["oldest_pending_seconds"] >= 1200
    close = body["dependencies"]["monthly_close"]
    assert close["status"] == "degraded" and close["statements_stopped_on_mismatch"] == 1


@pytest.mark.slow
def test_a_metrics_directory_not_there_yet_is_created_and_one_that_cannot_be_is_named(tmp_path):
    import os
    import subprocess
    import sys

    def check(directory):
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        return subprocess.run([sys.executable, "manage.py", "check"], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    missing = tmp_path / "not" / "yet"
    result = check(missing)
    assert result.returncode == 0, result.stderr[-2000:]
    assert missing.is_dir()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = check(blocker / "metrics")
    assert result.returncode != 0
    assert "not a directory the portal can create" in result.stderr
