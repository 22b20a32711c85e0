"""Cloudflare's HTTP, once: the pooled client, retries, the rate budget and the response envelope.

One pooled `httpx.AsyncClient` per process, explicit timeouts, retries (tenacity) on 429, 5xx,
timeouts and connection errors only, honouring Retry-After. Everything Cloudflare says goes through
`envelope`, so a failure is always one of the `bot.errors.SeatsError` classes carrying Cloudflare's
codes and the cf-ray. With a `RateBudget`, every attempt first takes a slot in the token's shared
rate budget (Redis) and every answer's `Ratelimit` headers feed it back. The operations that use it
are in bot/cloudflare/client.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from bot import USER_AGENT, metrics
from bot.cloudflare.budget import Lane, RateBudget
from bot.errors import (
    AuthenticationFailed,
    CloudflareMessage,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    SeatsError,
    Unavailable,
)
from bot.ops.netdiag import endpoint, why

log = logging.getLogger("seatbot.cloudflare")

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
MAX_WAIT_SECONDS = 60.0

Sleep = Callable[[float], Awaitable[None]]


class _Retryable(Exception):
    """Internal: a failure worth another attempt; carries the error to raise if none is left."""

    def __init__(self, error: SeatsError, retry_after: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Wait:
    """Retry-After when Cloudflare gives one, else exponential backoff with jitter; capped."""

    def __init__(self) -> None:
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.5)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_WAIT_SECONDS)
        return min(self._backoff(state), MAX_WAIT_SECONDS)


class _Deadline(stop_base):
    """Stop before a wait that would end past the deadline, on the client's (injectable) clock."""

    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def __call__(self, state: RetryCallState) -> bool:
        return self._clock() + (state.upcoming_sleep or 0.0) >= self._end


def _messages(items: Any) -> tuple[CloudflareMessage, ...]:
    if not isinstance(items, list):
        return ()
    found = []
    for item in items:
        if isinstance(item, Mapping):
            code = item.get("code")
            found.append(
                CloudflareMessage(code if isinstance(code, int) else None, str(item.get("message", "")))
            )
    return tuple(found)


def _error_class(status: int) -> type[SeatsError]:
    if status == 401:
        return AuthenticationFailed
    if status == 403:
        return PermissionDenied
    if status == 404:
        return NotFound
    if status == 429:
        return RateLimited
    if status >= 500:
        return Unavailable
    return InvalidRequest


class CloudflareHTTP:
    """Calls to Cloudflare's API with retries within a deadline and within the shared rate budget."""

    def __init__(
        self,
        *,
        auth_headers: Mapping[str, str],
        base_url: str = DEFAULT_BASE_URL,
        retry_deadline: float = 60.0,
        max_attempts: int = 6,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        budget: RateBudget | None = None,
        budget_wait: float = 15.0,
    ) -> None:
        self._deadline = retry_deadline
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self.budget = budget
        self._budget_wait = budget_wait  # how long an interactive request may wait for a slot
        self._endpoint = endpoint(base_url)  # host:port, named when it cannot be reached
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **auth_headers},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self, method: str, path: str, *, lane: Lane = "interactive", **kwargs: Any
    ) -> tuple[dict[str, Any], str | None]:
        attempt = 0
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
            wait=_Wait(),
            stop=stop_any(stop_after_attempt(self._max_attempts), _Deadline(self._clock, self._deadline)),
            sleep=self._sleep,
            reraise=True,
        )
        error: SeatsError | None = None
        try:
            async for try_ in retrying:
                with try_:
                    attempt += 1
                    if self.budget is not None:
                        # the directory's listing may wait out a full pause and a window's slide,
                        # never longer: a sync that cannot go on fails and says why (no endless "syncing")
                        wait = 2 * self.budget.window + 60 if lane == "sync" else self._budget_wait
                        await self.budget.take(lane, max_wait=wait)
                    return await self._attempt(method, path, attempt, **kwargs)
        except _Retryable as exc:
            error = exc.error
        assert error is not None
        message = error.message
        if isinstance(error, Unavailable):
            message = f"Cloudflare unavailable after {attempt} attempts ({error.message})"
        # Raised outside the except block: no __context__ chain leading back to request headers.
        raise error.but(message=message, attempts=attempt)

    async def _attempt(
        self, method: str, path: str, attempt: int, **kwargs: Any
    ) -> tuple[dict[str, Any], str | None]:
        started = time.perf_counter()
        failure: str | None = None
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            failure = f"timed out ({self._endpoint})"
        except httpx.TransportError as exc:
            failure = f"connection failed: {type(exc).__name__} ({self._endpoint}: {why(exc)})"
        except httpx.HTTPError as exc:  # e.g. a body that cannot be decoded; seat updates are safe to repeat
            failure = f"unreadable answer: {type(exc).__name__}"
        if failure is not None:  # raised outside the except: the httpx error (with headers) is dropped
            self._log(method, path, None, attempt, None, started)
            raise _Retryable(Unavailable(failure), None)
        ray = response.headers.get("cf-ray")
        self._log(method, path, response.status_code, attempt, ray, started)
        if self.budget is not None:
            retry_after = parse_retry_after(response.headers) if response.status_code == 429 else None
            await self.budget.observe(response.headers, retry_after=retry_after)
        return envelope(response, ray), ray

    @staticmethod
    def _log(
        method: str, path: str, status: int | None, attempt: int, ray: str | None, started: float
    ) -> None:
        metrics.cloudflare_request(method, path, status, time.perf_counter() - started)
        log.info(
            "cloudflare %s /%s -> %s",
            method,
            path,
            status if status is not None else "no response",
            extra={
                "http_method": method,
                "path": "/" + path,
                "status": status,
                "attempt": attempt,
                "cf_ray": ray,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )


def envelope(response: httpx.Response, ray: str | None) -> dict[str, Any]:
    """Cloudflare's `{success, errors, result}` answer → its data, or the SeatsError it stands for."""
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and status < 400 and data.get("success") is True:
        return data
    errors = _messages(data.get("errors")) if isinstance(data, dict) else ()
    if not isinstance(data, dict):
        message = f"Cloudflare answered HTTP {status} with a body that is not JSON"
    elif errors:
        message = "; ".join(f"{e.code}: {e.message}" for e in errors)
    else:
        message = f"Cloudflare reported a failure (HTTP {status}) without details"
    cls = _error_class(status) if status >= 400 else InvalidRequest
    error = cls(message, status=status, errors=errors, cf_ray=ray)
    if status == 429 or status >= 500:
        raise _Retryable(error, parse_retry_after(response.headers))
    raise error
