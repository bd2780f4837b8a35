"""What the sync and the async client share: configuration, the request each call makes,
how an answer (or its absence) becomes a result or a typed error."""

from __future__ import annotations

import logging
import platform
import uuid
from dataclasses import replace
from typing import Any, TypeVar, Union

import httpx

from billing_client import __version__
from billing_client.endpoints import Call
from billing_client.errors import BillingError, Unavailable, error_from_payload
from billing_client.parsing import dumps, loads
from billing_client.retrying import RetryPolicy, parse_retry_after

T = TypeVar("T")
logger = logging.getLogger("billing_client")

API_PREFIX = "/api/v1/"
DEFAULT_TIMEOUT = 10.0
Timeout = Union[float, httpx.Timeout, None]
# For ``send(timeout=...)``: the client's own timeout, as configured.
CLIENT_TIMEOUT: Any = httpx.USE_CLIENT_DEFAULT


def user_agent() -> str:
    return (
        f"billing-portal-client/{__version__} "
        f"python/{platform.python_version()} httpx/{httpx.__version__}"
    )


def api_base(base_url: str) -> str:
    """``http://host:8000``, ``.../api/v1`` or ``.../api/v1/``: the API's root, with a slash."""
    base = base_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
    if base.endswith(API_PREFIX.rstrip("/")):
        return base + "/"
    return base + API_PREFIX


class ClientConfig:
    """Settings both clients take.

    ``base_url``: where the portal runs (``http://127.0.0.1:8000``). ``api_key``: an
    organisation key or a platform service key (a service key names the organisation in
    ``organization_id``, here as a default or on each call). ``timeout``: seconds per
    attempt (or an ``httpx.Timeout``). ``max_retries``: attempts after the first on
    connection errors, timeouts, 5xx and 429; ``backoff_base``/``backoff_max`` shape the
    exponential backoff; a ``Retry-After`` of more than ``max_retry_after`` seconds is not
    waited for.
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
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required.")
        self.base_url = api_base(base_url)
        self.api_key = api_key
        self.organization_id = organization_id
        self.timeout = timeout
        self.retry = RetryPolicy(
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
        )
        agent = user_agent()
        self.user_agent = f"{agent} {user_agent_suffix}" if user_agent_suffix else agent

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": self.user_agent,
            "Accept": "application/json",
        }

    def policy(self, max_retries: int | None) -> RetryPolicy:
        return self.retry if max_retries is None else replace(self.retry, max_retries=max_retries)

    def request_of(self, call: Call[Any], request_id: str) -> dict[str, Any]:
        """The arguments of ``httpx.Client.request`` for one attempt of ``call``; every
        attempt of a call sends the same body, idempotency key and request id."""
        headers = {"X-Request-ID": request_id}
        content = None
        if call.body is not None:
            content = dumps(call.body)
            headers["Content-Type"] = "application/json"
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params or None,
            "content": content,
            "headers": headers,
        }


def capped_timeout(timeout: httpx.Timeout, seconds: float) -> httpx.Timeout:
    """``timeout`` with no wait (connect, write, read, pool) longer than ``seconds``: an
    attempt that must end by a deadline."""
    seconds = max(seconds, 0.001)

    def cap(value: float | None) -> float:
        return seconds if value is None else min(value, seconds)

    return httpx.Timeout(
        connect=cap(timeout.connect),
        read=cap(timeout.read),
        write=cap(timeout.write),
        pool=cap(timeout.pool),
    )


def new_request_id() -> str:
    return uuid.uuid4().hex


def read_response(call: Call[T], response: httpx.Response, request_id: str) -> T:
    """The call's result, or raises the typed error the answer carries."""
    if response.status_code < 400:
        if response.status_code == 204 or not response.content:
            return call.parse(None)
        try:
            data = loads(response.content)
        except ValueError:
            raise BillingError(
                "malformed_response",
                "The portal's answer is not JSON.",
                status=response.status_code,
                request_id=request_id,
            ) from None
        return call.parse(data)
    try:
        payload = loads(response.content) if response.content else None
    except ValueError:
        payload = None
    raise error_from_payload(
        payload,
        response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        request_id=response.headers.get("X-Request-ID") or request_id,
    )


def error_from_exception(exc: httpx.TransportError, request_id: str) -> Unavailable:
    """An answer that never came, as ``Unavailable``; its code says whether the request
    may have reached the portal (``connect_error``, ``connect_timeout``, ``pool_timeout``: it
    did not)."""
    if isinstance(exc, httpx.ConnectTimeout):
        code = "connect_timeout"
    elif isinstance(exc, httpx.PoolTimeout):
        code = "pool_timeout"
    elif isinstance(exc, httpx.ConnectError):
        code = "connect_error"
    elif isinstance(exc, httpx.TimeoutException):
        code = "timeout"
    else:
        code = "connection_lost"
    return Unavailable(code, f"No answer from the portal: {exc!r}", request_id=request_id)


def log_retry(call: Call[Any], error: BillingError, delay: float, retry: int) -> None:
    logger.warning(
        "%s %s failed (%s); retry %d in %.2f s",
        call.method,
        call.path,
        error.code if error.status is None else f"HTTP {error.status} {error.code}",
        retry + 1,
        delay,
    )
