"""Entitlements: may this usage happen? Asked and recorded in one step.

There is no separate "check, then record" in the portal, and there must not be: two
workers that both check and then both record could spend the last execution twice.
Recording the event *is* the check. The portal prices it, reserves it against every hard
budget and the plan's inclusion under locks, and either stores it or refuses it with
HTTP 402, in one transaction.

``included_only=True`` (the default) asks for ``billing_method="subscription_included"``:
the event must fit what the plan includes this period (inclusions and free allowances);
beyond that the portal refuses with ``not_included_in_subscription``, raised here as
``QuotaExceeded``. ``included_only=False`` lets the portal bill the usage beyond the
inclusion; then only a hard budget (``BudgetExceeded``), funds that were asked for
(``InsufficientFunds``) or an overdue subscription (``SubscriptionPastDue``) refuse it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from billing_client import endpoints
from billing_client.errors import PaymentRequired
from billing_client.parsing import Quantity, decimal
from billing_client.results import RecordedUsage

if TYPE_CHECKING:
    from billing_client.async_client import AsyncBillingClient
    from billing_client.client import BillingClient

F = TypeVar("F", bound=Callable[..., Any])

# Seed 002's resource types, as products of the demo catalog. Any other name is taken as a
# product id; a catalog with other codes names its products directly (or edits this map).
RESOURCE_PRODUCTS: dict[str, str] = {
    "executions": "agent-run",
    "tokens": "gpt-4o-mini",
    "api_calls": "gateway-request",
    "tool_calls": "mcp-tool-call",
    "storage": "object-storage",
}


def product_for(resource: str) -> str:
    return RESOURCE_PRODUCTS.get(resource, resource)


@dataclass(frozen=True)
class EntitlementCheck:
    """The answer of ``check_and_record``: ``allowed`` and recorded (``record``), or refused
    (``error``, the typed refusal: ``QuotaExceeded``, ``BudgetExceeded``, ...)."""

    allowed: bool
    product_id: str
    quantity: Decimal
    record: RecordedUsage | None = None
    error: PaymentRequired | None = None

    @property
    def remaining_budget(self) -> Decimal | None:
        """The least left in any hard budget the event counted against (None: no hard
        budget covers it)."""
        if self.record is None:
            return None
        left = [b.remaining for b in self.record.budgets if b.hard]
        return min(left) if left else None

    def raise_if_refused(self) -> EntitlementCheck:
        if self.error is not None:
            raise self.error
        return self


def entitlement_event(
    *,
    product_id: str,
    quantity: Quantity,
    included_only: bool,
    dimensions: Mapping[str, Quantity] | None,
    user_id: str | None,
    organization_id: str | None,
    idempotency_key: str | None,
    occurred_at: datetime | None,
    usage_details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return endpoints.usage_event(
        product_id=product_for(product_id),
        quantity=None if dimensions else quantity,
        dimensions=dimensions,
        event_id=idempotency_key,
        organization_id=organization_id,
        user_id=user_id,
        billing_method="subscription_included" if included_only else None,
        occurred_at=occurred_at,
        usage_details=usage_details,
    )


def allowed(event: Mapping[str, Any], record: RecordedUsage) -> EntitlementCheck:
    return EntitlementCheck(
        allowed=True,
        product_id=event["product_id"],
        quantity=record.usage_amount,
        record=record,
    )


def refused(event: Mapping[str, Any], error: PaymentRequired) -> EntitlementCheck:
    quantity = event.get("usage_amount")
    if quantity is None:
        quantity = sum((decimal(v) for v in event.get("dimensions", {}).values()), Decimal(0))
    return EntitlementCheck(
        allowed=False, product_id=event["product_id"], quantity=decimal(quantity), error=error
    )


ClientSource = Union["BillingClient", "AsyncBillingClient", Callable[[], Any]]


def require_entitlement(
    resource: str,
    quantity: Quantity = Decimal(1),
    *,
    client: ClientSource,
    included_only: bool = True,
    organization_id: str | Callable[..., str | None] | None = None,
    user_id: str | Callable[..., str | None] | None = None,
    dimensions: Mapping[str, Quantity] | None = None,
) -> Callable[[F], F]:
    """Runs the decorated function only if the portal allowed and recorded the usage;
    otherwise raises the refusal (``QuotaExceeded``, ``BudgetExceeded``, ...) and the
    function does not run. Works on plain and on ``async`` functions.

    ``resource``: a product id, or a resource type of ``RESOURCE_PRODUCTS``
    (``"executions"``, ``"tokens"``, ...). ``client``: a ``BillingClient`` or
    ``AsyncBillingClient`` (or a function returning one, read at each call); an async
    function may use either (a sync client runs in a worker thread), a plain function needs
    a ``BillingClient``. ``organization_id`` and ``user_id`` are values, or functions of
    the decorated function's arguments that return them.

    The usage is recorded before the function runs and stays recorded if the function then
    fails: entitlement is granted at the door, as a ticket is.
    """

    def resolve(value, args, kwargs):
        return value(*args, **kwargs) if callable(value) else value

    def client_now():
        from billing_client.async_client import AsyncBillingClient
        from billing_client.client import BillingClient

        source = client
        if not isinstance(source, (BillingClient, AsyncBillingClient)) and callable(source):
            source = source()
        if not isinstance(source, (BillingClient, AsyncBillingClient)):
            raise TypeError("client must be a BillingClient or an AsyncBillingClient.")
        return source

    def arguments(args, kwargs) -> dict[str, Any]:
        return {
            "product_id": resource,
            "quantity": quantity,
            "included_only": included_only,
            "dimensions": dimensions,
            "organization_id": resolve(organization_id, args, kwargs),
            "user_id": resolve(user_id, args, kwargs),
        }

    def decorate(function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args, **kwargs):
                source = client_now()
                ask = arguments(args, kwargs)
                if inspect.iscoroutinefunction(source.check_and_record):
                    check = await source.check_and_record(**ask)
                else:
                    check = await asyncio.get_running_loop().run_in_executor(
                        None, functools.partial(source.check_and_record, **ask)
                    )
                check.raise_if_refused()
                return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args, **kwargs):
            source = client_now()
            if inspect.iscoroutinefunction(source.check_and_record):
                raise TypeError("A plain function needs a BillingClient, not an async one.")
            source.check_and_record(**arguments(args, kwargs)).raise_if_refused()
            return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
