"""Twin batches posted at the same moment: one is stored, the other is its duplicate."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test import Client

from apps.customers import wallets
from apps.usage.models import BillingRecord, UsageEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BATCH = "/api/v1/usage/batch"
ROUNDS = 3


def post_together(key: str, batches: list[list[dict]]) -> list:
    barrier = threading.Barrier(len(batches))

    def post(events):
        client = Client()
        try:
            barrier.wait(timeout=30)
            response = client.post(
                BATCH,
                {"events": events},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
            )
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        return list(pool.map(post, batches, timeout=120))


def twins(prefix: str, size: int, *, order: str, amounts=(1, 1)) -> list[list[dict]]:
    first = [
        {"event_id": f"{prefix}-{n:04d}", "product_id": "calls", "usage_amount": amounts[0]}
        for n in range(size)
    ]
    second = [{**event, "usage_amount": amounts[1]} for event in first]
    if order == "opposite":
        second.reverse()
    return [first, second]


def statuses(answer) -> list[str]:
    return [result["status"] for result in answer["results"]]


def assert_stored_once(prefix: str, size: int) -> None:
    keys = list(
        UsageEvent.objects.filter(idempotency_key__startswith=f"{prefix}-").values_list(
            "idempotency_key", flat=True
        )
    )
    assert len(keys) == len(set(keys)) == size
    records = BillingRecord.objects.filter(event__idempotency_key__startswith=f"{prefix}-")
    assert records.count() == size


@pytest.mark.parametrize("order", ["same", "opposite"])
@pytest.mark.parametrize("size", [20, 500, 1000])
def test_the_loser_of_twin_batches_answers_every_event_as_a_duplicate(org, key, calls, size, order):
    for round_ in range(ROUNDS):
        prefix = f"r{round_}"

        answers = post_together(key, twins(prefix, size, order=order))

        assert [status for status, _ in answers] == [200, 200], answers
        outcomes = sorted((set(statuses(answer)) for _, answer in answers), key=sorted)
        assert outcomes == [{"accepted"}, {"duplicate"}]
        billing_ids = [
            {result["billing_id"] for result in answer["results"]} for _, answer in answers
        ]
        assert billing_ids[0] == billing_ids[1]
        assert_stored_once(prefix, size)


@pytest.mark.parametrize("order", ["same", "opposite"])
def test_the_loser_of_twin_batches_with_other_content_answers_each_event_a_conflict(
    org, key, calls, order
):
    # Paid from the wallet this time: both batches lock it before they write.
    wallets.top_up_wallet(organization=org, amount=D(100), actor="t", reason="t")
    size = 500
    for round_ in range(ROUNDS):
        prefix = f"r{round_}"

        answers = post_together(key, twins(prefix, size, order=order, amounts=(1, 2)))

        assert [status for status, _ in answers] == [200, 200], answers
        outcomes = sorted((set(statuses(answer)) for _, answer in answers), key=sorted)
        assert outcomes == [{"accepted"}, {"rejected"}]
        loser = next(answer for _, answer in answers if answer["rejected"])
        assert {result["error"]["code"] for result in loser["results"]} == {"idempotency_conflict"}
        assert_stored_once(prefix, size)
