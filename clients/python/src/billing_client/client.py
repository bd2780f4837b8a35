"""``BillingClient``: the portal's API over a blocking ``httpx.Client``.

Every call is tried again on connection errors, timeouts, 5xx and 429 (waiting as
``Retry-After`` asks, else with exponential backoff and jitter), sending the same body,
idempotency key and request id each time: a retried usage post is answered as the
duplicate it is and never bills twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from billing_client import endpoints, entitlements, reports, results
from billing_client.endpoints import Call
from billing_client.errors import BillingError, PaymentRequired
from billing_client.parsing import Quantity
from billing_client.transport import (
    CLIENT_TIMEOUT,
    DEFAULT_TIMEOUT,
    ClientConfig,
    Timeout,
    error_from_exception,
    log_retry,
    new_request_id,
    read_response,
)

T = TypeVar("T")


class BillingClient:
    """The portal's API, blocking. Safe to share between threads.

    >>> with BillingClient("http://127.0.0.1:8000", api_key) as billing:
    ...     billing.record_usage("agent-run", Decimal(1))

    See ``ClientConfig`` for the settings. ``http_client`` replaces the ``httpx.Client``
    this would make (its base URL, auth and timeout are then yours to set).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        organization_id: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 60.0,
        user_agent_suffix: str | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.config = ClientConfig(
            base_url,
            api_key,
            organization_id=organization_id,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
            user_agent_suffix=user_agent_suffix,
        )
        self._http = http_client or httpx.Client(
            base_url=self.config.base_url, headers=self.config.headers(), timeout=timeout
        )

    def __repr__(self) -> str:
        return f"BillingClient(base_url={self.config.base_url!r})"

    def __enter__(self) -> BillingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    @property
    def timeout(self) -> httpx.Timeout:
        """Each attempt's timeouts (the ``httpx`` client's, yours with ``http_client``)."""
        return self._http.timeout

    @property
    def organization_id(self) -> str | None:
        return self.config.organization_id

    def _org(self, organization_id: str | None) -> str | None:
        return organization_id or self.config.organization_id

    def send(
        self, call: Call[T], *, max_retries: int | None = None, timeout: Timeout = CLIENT_TIMEOUT
    ) -> T:
        """Sends ``call``, trying again as the retry policy allows; returns its result or
        raises the typed error of the last attempt. ``timeout``: each attempt's timeout,
        instead of the client's (seconds or an ``httpx.Timeout``)."""
        policy = self.config.policy(max_retries)
        request_id = new_request_id()
        retry = 0
        while True:
            try:
                response = self._http.request(
                    **self.config.request_of(call, request_id), timeout=timeout
                )
            except httpx.TransportError as exc:
                error: BillingError = error_from_exception(exc, request_id)
                cause: BaseException | None = exc
            else:
                try:
                    return read_response(call, response, request_id)
                except BillingError as exc:
                    error, cause = exc, None
            delay = policy.delay(retry, error, idempotent=call.idempotent)
            if delay is None:
                raise error from cause
            log_retry(call, error, delay, retry)
            time.sleep(delay)
            retry += 1

    # --- usage ---------------------------------------------------------------------------

    def record_usage(
        self,
        product_id: str,
        quantity: Quantity | None = None,
        *,
        dimensions: Mapping[str, Quantity] | None = None,
        user_id: str | None = None,
        organization_id: str | None = None,
        idempotency_key: str | None = None,
        service_type: str | None = None,
        session_id: str | None = None,
        billing_method: str | None = None,
        occurred_at: datetime | None = None,
        usage_details: Mapping[str, Any] | None = None,
    ) -> results.RecordedUsage:
        """Records one usage event (``usage/record``): priced, reserved against budgets and
        paid in one step. ``idempotency_key`` defaults to a fresh uuid4, sent unchanged on
        every retry; posting the same key again returns the first record
        (``duplicate=True``). Raises ``BudgetExceeded``, ``QuotaExceeded``,
        ``IdempotencyConflict``, ``ValidationFailed``, ... when refused."""
        event = endpoints.usage_event(
            product_id=product_id,
            quantity=quantity,
            dimensions=dimensions,
            event_id=idempotency_key,
            organization_id=self._org(organization_id),
            user_id=user_id,
            service_type=service_type,
            session_id=session_id,
            billing_method=billing_method,
            occurred_at=occurred_at,
            usage_details=usage_details,
        )
        return self.send(endpoints.record_usage(event))

    def record_batch(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        organization_id: str | None = None,
        max_retries: int | None = None,
        timeout: Timeout = CLIENT_TIMEOUT,
    ) -> results.BatchResult:
        """Records up to 1,000 events (``usage/batch``), each as built by
        ``billing_client.usage_event`` (or the same fields). Events without ``event_id`` get
        one now, kept across retries. One refused event never refuses the others: each
        answer is in ``results`` (``accepted``, ``duplicate`` or ``rejected`` with its typed
        ``error``). ``timeout`` replaces the client's for this call's attempts."""
        call = endpoints.record_batch(events, organization_id=self._org(organization_id))
        return self.send(call, max_retries=max_retries, timeout=timeout)

    def check_and_record(
        self,
        product_id: str,
        quantity: Quantity = Decimal(1),
        *,
        included_only: bool = True,
        dimensions: Mapping[str, Quantity] | None = None,
        user_id: str | None = None,
        organization_id: str | None = None,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
        usage_details: Mapping[str, Any] | None = None,
    ) -> entitlements.EntitlementCheck:
        """Asks whether the usage is allowed and records it, atomically (see
        ``billing_client.entitlements``). A refusal (``QuotaExceeded``, ``BudgetExceeded``,
        ``InsufficientFunds``, ``SubscriptionPastDue``) is answered as ``allowed=False``
        with the error in ``error``; other failures raise."""
        event = entitlements.entitlement_event(
            product_id=product_id,
            quantity=quantity,
            included_only=included_only,
            dimensions=dimensions,
            user_id=user_id,
            organization_id=self._org(organization_id),
            idempotency_key=idempotency_key,
            occurred_at=occurred_at,
            usage_details=usage_details,
        )
        try:
            record = self.send(endpoints.record_usage(event))
        except PaymentRequired as refusal:
            return entitlements.refused(event, refusal)
        return entitlements.allowed(event, record)

    # --- pricing, quotas, budgets ----------------------------------------------------------

    def calculate_cost(
        self,
        product_id: str,
        quantity: Quantity | None = None,
        *,
        dimensions: Mapping[str, Quantity] | None = None,
        usage_details: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        service_type: str | None = None,
        currency: str | None = None,
        at: datetime | None = None,
        organization_id: str | None = None,
    ) -> results.CostQuote:
        """What the usage would cost if recorded now (``billing/calculate``); records
        nothing."""
        return self.send(
            endpoints.calculate_cost(
                product_id=product_id,
                quantity=quantity,
                dimensions=dimensions,
                usage_details=usage_details,
                user_id=user_id,
                service_type=service_type,
                currency=currency,
                at=at,
                organization_id=self._org(organization_id),
            )
        )

    def estimate_cost(
        self,
        product_id: str,
        *,
        input_tokens: Quantity | None = None,
        output_tokens: Quantity | None = None,
        dimensions: Mapping[str, Quantity] | None = None,
        organization_id: str | None = None,
    ) -> results.CostEstimate:
        """What a planned call would cost from its token counts (``pricing/estimate``)."""
        return self.send(
            endpoints.estimate_cost(
                product_id=product_id,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                dimensions=dimensions,
                organization_id=self._org(organization_id),
            )
        )

    def check_quota(
        self,
        requested_amount: Quantity,
        *,
        product_id: str | None = None,
        service_type: str | None = None,
        user_id: str | None = None,
        organization_id: str | None = None,
    ) -> results.QuotaCheck:
        """How much of the plan's inclusion is left (``quota/check``). Reserves nothing:
        use ``check_and_record`` to act on the answer."""
        return self.send(
            endpoints.check_quota(
                requested_amount=requested_amount,
                product_id=product_id,
                service_type=service_type,
                user_id=user_id,
                organization_id=self._org(organization_id),
            )
        )

    def check_budgets(
        self,
        product_id: str,
        quantity: Quantity | None = None,
        *,
        dimensions: Mapping[str, Quantity] | None = None,
        usage_details: Mapping[str, Any] | None = None,
        organization_id: str | None = None,
    ) -> results.BudgetCheck:
        """Would the usage fit every budget that covers it (``budgets/check``)? Reserves
        nothing."""
        return self.send(
            endpoints.check_budgets(
                product_id=product_id,
                quantity=quantity,
                dimensions=dimensions,
                usage_details=usage_details,
                organization_id=self._org(organization_id),
            )
        )

    def budget_violations(self, *, organization_id: str | None = None) -> results.BudgetViolations:
        return self.send(endpoints.budget_violations(organization_id=self._org(organization_id)))

    def list_budgets(self, *, organization_id: str | None = None) -> list[results.Budget]:
        return self.send(endpoints.list_budgets(organization_id=self._org(organization_id)))

    def get_budget(self, budget_id: int, *, organization_id: str | None = None) -> results.Budget:
        return self.send(
            endpoints.get_budget(budget_id, organization_id=self._org(organization_id))
        )

    def create_budget(
        self,
        *,
        name: str,
        limit: Quantity,
        period: str = "monthly",
        scope: str = "all",
        is_hard: bool = True,
        thresholds: list[int] | None = None,
        service_type: str | None = None,
        product_id: str | None = None,
        api_key: str | None = None,
        organization_id: str | None = None,
    ) -> results.Budget:
        """Creates a budget (``scope``: all, service_type, product or api_key, naming that
        one). Not sent again after an ambiguous failure: it is not idempotent."""
        fields = {"name": name, "limit": limit, "period": period, "scope": scope,
                  "is_hard": is_hard, "thresholds": thresholds, "service_type": service_type,
                  "product_id": product_id, "api_key": api_key}  # fmt: skip
        fields = {k: v for k, v in fields.items() if v is not None}
        return self.send(
            endpoints.create_budget(organization_id=self._org(organization_id), **fields)
        )

    def update_budget(
        self, budget_id: int, *, organization_id: str | None = None, **fields: Any
    ) -> results.Budget:
        """Changes the given fields of a budget (``limit``, ``is_hard``, ``is_active``, ...)."""
        return self.send(
            endpoints.update_budget(budget_id, organization_id=self._org(organization_id), **fields)
        )

    def delete_budget(self, budget_id: int, *, organization_id: str | None = None) -> None:
        self.send(endpoints.delete_budget(budget_id, organization_id=self._org(organization_id)))

    # --- billing records and settlement ----------------------------------------------------

    def billing_records(
        self,
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
    ) -> reports.RecordPage:
        """One page of billing records, newest first (``billing/records``); pass
        ``next_cursor`` back as ``cursor`` for the next (or use ``iter_billing_records``)."""
        return self.send(
            endpoints.billing_records(
                organization_id=self._org(organization_id),
                user_id=user_id,
                status=status,
                product_id=product_id,
                service_type=service_type,
                start_date=start_date,
                end_date=end_date,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_billing_records(self, **filters: Any) -> Iterator[results.BillingRecord]:
        """Every billing record the filters select, page after page."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.billing_records(cursor=cursor, **filters)
            yield from page.records
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def user_billing_records(
        self,
        user_id: str,
        *,
        organization_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> reports.UserRecords:
        return self.send(
            endpoints.user_billing_records(
                user_id,
                organization_id=self._org(organization_id),
                status=status,
                limit=limit,
                offset=offset,
            )
        )

    def process_billing(
        self,
        billing_id: str,
        billing_method: str,
        *,
        force_charge: bool = False,
        organization_id: str | None = None,
    ) -> results.BillingRecord:
        """Settles a pending (or failed) record; asking again for what is done changes
        nothing."""
        return self.send(
            endpoints.process_billing(
                billing_id=billing_id,
                billing_method=billing_method,
                force_charge=force_charge,
                organization_id=self._org(organization_id),
            )
        )

    def refund_billing(
        self, billing_id: str, *, reason: str, organization_id: str | None = None
    ) -> results.BillingRecord:
        """Refunds a record in full; refunding twice changes nothing."""
        return self.send(
            endpoints.refund_billing(
                billing_id=billing_id, reason=reason, organization_id=self._org(organization_id)
            )
        )

    # --- reports ---------------------------------------------------------------------------

    def stats(
        self,
        *,
        organization_id: str | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
    ) -> reports.Stats:
        """Billing statistics for a date range, by default the last 30 days (``stats``)."""
        return self.send(
            endpoints.stats(
                organization_id=self._org(organization_id),
                start_date=start_date,
                end_date=end_date,
            )
        )

    def usage_aggregations(
        self, *, group_by: str | Iterable[str] = "service_type", **filters: Any
    ) -> reports.Aggregations:
        """Totals grouped by service_type, product, user, day and/or billing_method;
        filters: organization_id, user_id, product_id, service_type, start_date, end_date."""
        filters["organization_id"] = self._org(filters.get("organization_id"))
        return self.send(endpoints.usage_aggregations(group_by=group_by, **filters))

    def usage_trends(self, *, days: int = 30, **filters: Any) -> reports.Trends:
        """Daily totals over the last ``days`` days."""
        filters["organization_id"] = self._org(filters.get("organization_id"))
        return self.send(endpoints.usage_trends(days=days, **filters))

    def top_consumers(self, *, limit: int = 10, **filters: Any) -> reports.TopConsumers:
        """The highest-cost end users (or, for a service key naming no organisation, the
        highest-cost organisations)."""
        filters["organization_id"] = self._org(filters.get("organization_id"))
        return self.send(endpoints.top_consumers(limit=limit, **filters))

    def wallet(self, *, organization_id: str | None = None) -> reports.Wallet:
        return self.send(endpoints.wallet(organization_id=self._org(organization_id)))

    def statements(
        self,
        *,
        organization_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> reports.StatementPage:
        return self.send(
            endpoints.statements(
                organization_id=self._org(organization_id), limit=limit, cursor=cursor
            )
        )

    def statement(
        self, statement_id: int, *, organization_id: str | None = None
    ) -> reports.Statement:
        return self.send(
            endpoints.statement(statement_id, organization_id=self._org(organization_id))
        )

    def products(self, *, organization_id: str | None = None) -> reports.PriceSheet:
        """Every active product with its prices on the caller's plan."""
        return self.send(endpoints.products(organization_id=self._org(organization_id)))

    def product(
        self, product_id: str, *, organization_id: str | None = None
    ) -> reports.ProductPrice:
        return self.send(endpoints.product(product_id, organization_id=self._org(organization_id)))

    def info(self) -> reports.Info:
        """The service and the caller (the key's kind, organisation and scopes)."""
        return self.send(endpoints.info())

    def organization(self, *, organization_id: str | None = None) -> reports.Organization:
        return self.send(endpoints.organization(organization_id=self._org(organization_id)))
