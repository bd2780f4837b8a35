"""The client's own rules, without a portal: retry timing, numbers on the wire, error
types."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from billing_client import BudgetExceeded, QuotaExceeded, ServerError, Unavailable, ValidationFailed
from billing_client.errors import error_from_payload
from billing_client.parsing import loads, quantity_text
from billing_client.retrying import RetryPolicy, is_retryable, parse_retry_after


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_backoff_grows_exponentially_with_jitter_up_to_its_ceiling():
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)

    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (8, 4.0)]:
        waits = {policy.backoff(retry) for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(waits) > 1


def test_a_lost_answer_is_retried_only_when_sending_again_is_safe():
    refused = Unavailable("connect_error", "refused")  # never reached the portal
    lost = Unavailable("connection_lost", "reset")  # may have been processed
    failed = error_from_payload(None, 500)

    assert is_retryable(refused, idempotent=False) and is_retryable(refused, idempotent=True)
    assert not is_retryable(lost, idempotent=False) and is_retryable(lost, idempotent=True)
    assert not is_retryable(failed, idempotent=False) and is_retryable(failed, idempotent=True)
    assert is_retryable(error_from_payload(None, 429), idempotent=False)
    assert not is_retryable(error_from_payload(None, 402), idempotent=True)


def test_a_retry_after_longer_than_the_policy_accepts_is_not_waited_for():
    policy = RetryPolicy(max_retries=3, max_retry_after=60)
    throttled = error_from_payload(None, 429, retry_after=120)

    assert policy.delay(0, throttled, idempotent=True) is None
    assert policy.delay(0, error_from_payload(None, 429, retry_after=2), idempotent=True) == 2
    assert policy.delay(3, error_from_payload(None, 503), idempotent=True) is None


def test_quantities_go_out_as_plain_decimal_text_and_floats_are_refused():
    assert quantity_text(Decimal("1E+3")) == "1000"
    assert quantity_text(Decimal("0.0000020")) == "0.000002"
    assert quantity_text(7) == "7" and quantity_text(" 2.50 ") == "2.5"
    with pytest.raises(TypeError):
        quantity_text(0.1)
    with pytest.raises(ValueError):
        quantity_text(Decimal("NaN"))


def test_numbers_come_in_as_decimals():
    assert loads(b'{"a": 0.1, "b": 3}') == {"a": Decimal("0.1"), "b": 3}
    assert isinstance(loads(b"[1.5]")[0], Decimal)


def test_error_codes_become_their_types_and_unknown_codes_fall_back_on_the_status():
    budget = error_from_payload(
        {"error": {"code": "budget_exceeded", "message": "m",
                   "details": {"limit": "1.00", "current_usage": "0.60"}}},
        402,
    )  # fmt: skip
    quota = error_from_payload({"error": {"code": "quota_exceeded", "message": "m"}}, 402)
    novel = error_from_payload({"error": {"code": "something_new", "message": "m"}}, 422)
    proxy_page = error_from_payload("<html>Bad gateway</html>", 502)
    crashed = error_from_payload(None, 500)

    assert isinstance(budget, BudgetExceeded) and budget.limit == Decimal("1.00")
    assert budget.remaining == Decimal("0.40")
    assert isinstance(quota, QuotaExceeded)
    assert isinstance(novel, ValidationFailed) and novel.code == "something_new"
    assert isinstance(proxy_page, Unavailable) and proxy_page.code == "http_502"
    assert type(crashed) is ServerError and crashed.is_transient


def test_an_event_that_could_not_be_sent_is_refused_when_tracked():
    from billing_client import BillingClient, UsageTracker

    with BillingClient("http://127.0.0.1:9", "bp_org_x_y") as client:
        tracker = UsageTracker(client, flush_at_exit=False)
        with pytest.raises(TypeError):
            tracker.track("calls", 1, metadata={"tags": {"a", "b"}})
        with pytest.raises(TypeError):
            tracker.track("calls", 1.5)

    assert tracker.get_stats()["tracked"] == 0 and tracker.pending == 0
