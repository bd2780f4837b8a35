"""The API's operations, one function each: path, request, how the answer is read, and
whether sending it again is safe. The sync and the async client both send these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Generic, TypeVar
from urllib.parse import quote

from billing_client import reports, results
from billing_client.parsing import Quantity, quantities_text, quantity_text, timestamp_text

T = TypeVar("T")

BILLING_METHODS = (
    "subscription_included",
    "credit_consumption",
    "wallet_deduction",
    "payment_charge",
)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request. ``idempotent``: sending it again after an ambiguous failure (no answer,
    5xx) cannot change anything twice."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    idempotency_key: str | None = None
    idempotent: bool = True


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _scope(organization_id: str | None) -> dict[str, Any]:
    return {"organization_id": organization_id} if organization_id else {}


def _query(**values: Any) -> dict[str, Any]:
    query = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = timestamp_text(value)
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, (list, tuple)):
            value = ",".join(value)
        query[key] = value
    return query


def usage_event(
    *,
    product_id: str,
    quantity: Quantity | None = None,
    dimensions: Mapping[str, Quantity] | None = None,
    event_id: str | None = None,
    organization_id: str | None = None,
    user_id: str | None = None,
    service_type: str | None = None,
    session_id: str | None = None,
    billing_method: str | None = None,
    occurred_at: datetime | None = None,
    usage_details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One usage event as the portal reads it, with its idempotency key (``event_id``; a
    fresh uuid4 when none is given). The same dict sent again is the same event."""
    if not product_id:
        raise ValueError("product_id is required.")
    if quantity is None and not dimensions:
        raise ValueError("Give quantity or dimensions.")
    if billing_method is not None and billing_method not in BILLING_METHODS:
        raise ValueError(f"billing_method is one of: {', '.join(BILLING_METHODS)}.")
    return _clean(
        {
            "event_id": event_id or new_idempotency_key(),
            "organization_id": organization_id,
            "product_id": product_id,
            "usage_amount": None if quantity is None else quantity_text(quantity),
            "dimensions": quantities_text(dimensions) if dimensions else None,
            "user_id": user_id,
            "service_type": service_type,
            "session_id": session_id,
            "billing_method": billing_method,
            "occurred_at": timestamp_text(occurred_at) if occurred_at else None,
            "usage_details": dict(usage_details) if usage_details else None,
        }
    )


def record_usage(event: dict[str, Any]) -> Call[results.RecordedUsage]:
    # The key goes in the body and the header alike: the portal takes either, and both
    # must agree.
    return Call(
        "POST",
        "usage/record",
        results.RecordedUsage.from_json,
        body=event,
        idempotency_key=event["event_id"],
    )


def record_batch(
    events: Iterable[Mapping[str, Any]], *, organization_id: str | None = None
) -> Call[results.BatchResult]:
    """Up to 1,000 events; each keeps the ``event_id`` it has, or gets one now."""
    prepared = []
    for event in events:
        event = dict(event)
        if not event.get("event_id"):
            event["event_id"] = new_idempotency_key()
        prepared.append(event)
    return Call(
        "POST",
        "usage/batch",
        results.BatchResult.from_json,
        body={**_scope(organization_id), "events": prepared},
    )


def _priced_usage(
    *,
    product_id: str,
    quantity: Quantity | None,
    dimensions: Mapping[str, Quantity] | None,
    usage_details: Mapping[str, Any] | None,
    organization_id: str | None,
) -> dict[str, Any]:
    return _clean(
        {
            **_scope(organization_id),
            "product_id": product_id,
            "usage_amount": None if quantity is None else quantity_text(quantity),
            "dimensions": quantities_text(dimensions) if dimensions else None,
            "usage_details": dict(usage_details) if usage_details else None,
        }
    )


def calculate_cost(
    *,
    product_id: str,
    quantity: Quantity | None = None,
    dimensions: Mapping[str, Quantity] | None = None,
    usage_details: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    service_type: str | None = None,
    currency: str | None = None,
    at: datetime | None = None,
    organization_id: str | None = None,
) -> Call[results.CostQuote]:
    body = _priced_usage(
        product_id=product_id,
        quantity=quantity,
        dimensions=dimensions,
        usage_details=usage_details,
        organization_id=organization_id,
    )
    body.update(
        _clean(
            {
                "user_id": user_id,
                "service_type": service_type,
                "currency": currency,
                "at": timestamp_text(at) if at else None,
            }
        )
    )
    return Call("POST", "billing/calculate", results.CostQuote.from_json, body=body)


def estimate_cost(
    *,
    product_id: str,
    input_tokens: Quantity | None = None,
    output_tokens: Quantity | None = None,
    dimensions: Mapping[str, Quantity] | None = None,
    organization_id: str | None = None,
) -> Call[results.CostEstimate]:
    body = _clean(
        {
            **_scope(organization_id),
            "product_id": product_id,
            "input_tokens": None
            if input_tokens is None
            else quantity_text(input_tokens, "input_tokens"),
            "output_tokens": None
            if output_tokens is None
            else quantity_text(output_tokens, "output_tokens"),
            "dimensions": quantities_text(dimensions) if dimensions else None,
        }
    )
    return Call("POST", "pricing/estimate", results.CostEstimate.from_json, body=body)


def check_quota(
    *,
    requested_amount: Quantity,
    product_id: str | None = None,
    service_type: str | None = None,
    user_id: str | None = None,
    organization_id: str | None = None,
) -> Call[results.QuotaCheck]:
    if not product_id and not service_type:
        raise ValueError("Give product_id or service_type.")
    body = _clean(
        {
            **_scope(organization_id),
            "product_id": product_id,
            "service_type": service_type,
            "user_id": user_id,
            "requested_amount": quantity_text(requested_amount, "requested_amount"),
        }
    )
    return Call("POST", "quota/check", results.QuotaCheck.from_json, body=body)


def check_budgets(
    *,
    product_id: str,
    quantity: Quantity | None = None,
    dimensions: Mapping[str, Quantity] | None = None,
    usage_details: Mapping[str, Any] | None = None,
    organization_id: str | None = None,
) -> Call[results.BudgetCheck]:
    body = _priced_usage(
        product_id=product_id,
        quantity=quantity,
        dimensions=dimensions,
        usage_details=usage_details,
        organization_id=organization_id,
    )
    return Call("POST", "budgets/check", results.BudgetCheck.from_json, body=body)


def budget_violations(*, organization_id: str | None = None) -> Call[results.BudgetViolations]:
    return Call(
        "GET",
        "budgets/violations",
        results.BudgetViolations.from_json,
        params=_scope(organization_id),
    )


def list_budgets(*, organization_id: str | None = None) -> Call[list[results.Budget]]:
    return Call(
        "GET",
        "budgets",
        lambda data: [results.Budget.from_json(item) for item in data],
        params=_scope(organization_id),
    )


def get_budget(budget_id: int, *, organization_id: str | None = None) -> Call[results.Budget]:
    return Call(
        "GET", f"budgets/{int(budget_id)}", results.Budget.from_json, params=_scope(organization_id)
    )


def _budget_body(fields: Mapping[str, Any]) -> dict[str, Any]:
    body = dict(fields)
    if body.get("limit") is not None:
        body["limit"] = quantity_text(body["limit"], "limit")
    return body


def create_budget(*, organization_id: str | None = None, **fields: Any) -> Call[results.Budget]:
    # Not idempotent: sent again only when it certainly never reached the portal.
    return Call(
        "POST",
        "budgets",
        results.Budget.from_json,
        params=_scope(organization_id),
        body=_budget_body(fields),
        idempotent=False,
    )


def update_budget(
    budget_id: int, *, organization_id: str | None = None, **fields: Any
) -> Call[results.Budget]:
    return Call(
        "PATCH",
        f"budgets/{int(budget_id)}",
        results.Budget.from_json,
        params=_scope(organization_id),
        body=_budget_body(fields),
    )


def delete_budget(budget_id: int, *, organization_id: str | None = None) -> Call[None]:
    return Call(
        "DELETE",
        f"budgets/{int(budget_id)}",
        lambda data: None,
        params=_scope(organization_id),
        idempotent=False,  # a second delete answers 404
    )


def billing_records(
    *,
    organization_id: str | None = None,
    user_id: str | None = None,
    status: str | None = None,
    product_id: str | None = None,
    service_type: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[reports.RecordPage]:
    params = _query(
        organization_id=organization_id,
        user_id=user_id,
        status=status,
        product_id=product_id,
        service_type=service_type,
        start_date=start_date,
        end_date=end_date,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "billing/records", reports.RecordPage.from_json, params=params)


def user_billing_records(
    user_id: str,
    *,
    organization_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Call[reports.UserRecords]:
    params = _query(organization_id=organization_id, status=status, limit=limit, offset=offset)
    return Call(
        "GET",
        f"billing/records/user/{quote(user_id, safe='')}",
        reports.UserRecords.from_json,
        params=params,
    )


def process_billing(
    *,
    billing_id: str,
    billing_method: str,
    force_charge: bool = False,
    organization_id: str | None = None,
) -> Call[results.BillingRecord]:
    body = {
        **_scope(organization_id),
        "billing_id": billing_id,
        "billing_method": billing_method,
        "force_charge": force_charge,
    }
    # Asking again for what is already done returns the record unchanged.
    return Call("POST", "billing/process", results.BillingRecord.from_json, body=body)


def refund_billing(
    *, billing_id: str, reason: str, organization_id: str | None = None
) -> Call[results.BillingRecord]:
    body = {**_scope(organization_id), "billing_id": billing_id, "reason": reason}
    # Refunding twice changes nothing.
    return Call("POST", "billing/refund", results.BillingRecord.from_json, body=body)


def stats(
    *,
    organization_id: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> Call[reports.Stats]:
    params = _query(organization_id=organization_id, start_date=start_date, end_date=end_date)
    return Call("GET", "stats", reports.Stats.from_json, params=params)


def usage_aggregations(
    *,
    group_by: str | Iterable[str] = "service_type",
    organization_id: str | None = None,
    user_id: str | None = None,
    product_id: str | None = None,
    service_type: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> Call[reports.Aggregations]:
    params = _query(
        group_by=group_by if isinstance(group_by, str) else list(group_by),
        organization_id=organization_id,
        user_id=user_id,
        product_id=product_id,
        service_type=service_type,
        start_date=start_date,
        end_date=end_date,
    )
    return Call("GET", "usage/aggregations", reports.Aggregations.from_json, params=params)


def usage_trends(
    *,
    days: int = 30,
    organization_id: str | None = None,
    product_id: str | None = None,
    service_type: str | None = None,
    user_id: str | None = None,
) -> Call[reports.Trends]:
    params = _query(
        days=days,
        organization_id=organization_id,
        product_id=product_id,
        service_type=service_type,
        user_id=user_id,
    )
    return Call("GET", "usage/trends", reports.Trends.from_json, params=params)


def top_consumers(
    *,
    limit: int = 10,
    organization_id: str | None = None,
    product_id: str | None = None,
    service_type: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> Call[reports.TopConsumers]:
    params = _query(
        limit=limit,
        organization_id=organization_id,
        product_id=product_id,
        service_type=service_type,
        start_date=start_date,
        end_date=end_date,
    )
    return Call("GET", "usage/top-consumers", reports.TopConsumers.from_json, params=params)


def wallet(*, organization_id: str | None = None) -> Call[reports.Wallet]:
    return Call("GET", "wallet", reports.Wallet.from_json, params=_scope(organization_id))


def statements(
    *, organization_id: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Call[reports.StatementPage]:
    params = _query(organization_id=organization_id, limit=limit, cursor=cursor)
    return Call("GET", "billing/statements", reports.StatementPage.from_json, params=params)


def statement(statement_id: int, *, organization_id: str | None = None) -> Call[reports.Statement]:
    return Call(
        "GET",
        f"billing/statements/{int(statement_id)}",
        reports.Statement.from_json,
        params=_scope(organization_id),
    )


def products(*, organization_id: str | None = None) -> Call[reports.PriceSheet]:
    return Call(
        "GET", "pricing/products", reports.PriceSheet.from_json, params=_scope(organization_id)
    )


def product(product_id: str, *, organization_id: str | None = None) -> Call[reports.ProductPrice]:
    return Call(
        "GET",
        f"pricing/products/{quote(product_id, safe='')}",
        reports.ProductPrice.from_json,
        params=_scope(organization_id),
    )


def info() -> Call[reports.Info]:
    return Call("GET", "info", reports.Info.from_json)


def organization(*, organization_id: str | None = None) -> Call[reports.Organization]:
    return Call(
        "GET", "organization", reports.Organization.from_json, params=_scope(organization_id)
    )
