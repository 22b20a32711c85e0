"""The Cloudflare adapter: update Zero Trust seats and find Access users.

One pooled `httpx.AsyncClient` per process, explicit timeouts, retries (tenacity) on 429, 5xx,
timeouts and connection errors only, honouring Retry-After. Everything Cloudflare says goes through
`_envelope`, so a failure is always one of the `bot.errors.SeatsError` classes carrying Cloudflare's
codes and the cf-ray. With a `RateBudget`, every attempt first takes a slot in the token's shared
rate budget (Redis) and every answer's `Ratelimit` headers feed it back.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from bot import USER_AGENT
from bot.cloudflare.budget import Lane, RateBudget
from bot.config import Settings
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
from bot.idle import fact
from bot.models import SEAT_UID_RE, AccessUser, Seat, SeatUpdate
from bot.netdiag import endpoint, why

log = logging.getLogger("seatbot.cloudflare")

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
MAX_WAIT_SECONDS = 60.0
PER_PAGE = 100

Sleep = Callable[[float], Awaitable[None]]
M = TypeVar("M", Seat, AccessUser)


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


@dataclass(frozen=True)
class UserPage:
    """One page of the user list, reduced to what the seat directory keeps."""

    holders: list[tuple[str, str]]  # (seat UID, email) of each listed user that has both
    count: int  # users on the page
    total_pages: int | None  # from result_info, when Cloudflare says
    facts: list[tuple[str, str]] = field(default_factory=list)  # (seat UID, bot.idle.fact) per user


class CloudflareClient:
    """Async adapter for the two Cloudflare operations the bot needs."""

    def __init__(
        self,
        *,
        account_id: str,
        auth_headers: Mapping[str, str],
        base_url: str = DEFAULT_BASE_URL,
        chunk_size: int = 50,
        retry_deadline: float = 60.0,
        max_attempts: int = 6,
        max_pages: int = 50,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        budget: RateBudget | None = None,
        budget_wait: float = 15.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{1,32}", account_id or ""):
            raise ValueError("account_id must be 1-32 letters and digits")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.account_id = account_id
        self.chunk_size = chunk_size
        self.max_pages = max_pages
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

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        budget: RateBudget | None = None,
    ) -> CloudflareClient:
        return cls(
            account_id=settings.account_id(),
            auth_headers=settings.cloudflare_auth_headers(),
            base_url=settings.cloudflare_base_url,
            chunk_size=settings.cloudflare_chunk_size,
            retry_deadline=settings.cloudflare_retry_deadline_seconds,
            max_pages=settings.cloudflare_max_pages,
            transport=transport,
            sleep=sleep,
            budget=budget,
            budget_wait=settings.cloudflare_budget_wait_seconds,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- operations ------------------------------------------------------------------------

    async def update_seats(self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive") -> list[Seat]:
        """PATCH the seats in chunks; return Cloudflare's seats in request order."""
        checked = self._check_updates(updates)
        seats: list[Seat] = []
        for start in range(0, len(checked), self.chunk_size):
            chunk = checked[start : start + self.chunk_size]
            body = [update.model_dump() for update in chunk]
            try:
                data, ray = await self._call("PATCH", self._path("seats"), lane=lane, json=body)
                seats.extend(self._parse(Seat, data.get("result"), ray))
            except SeatsError as exc:
                error = exc.but(completed=tuple(seats))  # earlier chunks did happen: say so
            else:
                continue
            raise error
        return seats

    async def find_users(self, *, email: str) -> list[AccessUser]:
        """Users whose email equals `email` (case-insensitively): Cloudflare's filter may be loose."""
        wanted = email.strip()
        if not wanted or len(wanted) > 254 or any(ch.isspace() for ch in wanted):
            raise InvalidRequest("email must be a non-empty address without spaces")
        folded = wanted.casefold()

        def exact(item: Mapping[str, Any]) -> bool:
            email = item.get("email")
            return isinstance(email, str) and email.casefold() == folded

        return (await self._list_users({"email": wanted}, keep=exact))[0]

    async def find_users_by_seat_uids(self, seat_uids: Collection[str]) -> dict[str, AccessUser]:
        """One pass over the user list for several seat UIDs; stops once all are found."""
        return (await self.scan_seat_uids(seat_uids))[0]

    async def scan_seat_uids(self, seat_uids: Collection[str]) -> tuple[dict[str, AccessUser], bool]:
        """The users holding these seat UIDs, and whether the listing was complete: a UID missing from
        a listing cut short by CLOUDFLARE_MAX_PAGES may still exist."""
        if isinstance(seat_uids, str):
            raise TypeError("seat_uids is a collection of UIDs, not one string")
        wanted = set(seat_uids)
        if not wanted:
            return {}, True
        if not all(SEAT_UID_RE.fullmatch(uid) for uid in wanted):
            raise InvalidRequest("seat_uid must be 1-36 characters of letters, digits and '-'")
        found: dict[str, AccessUser] = {}

        def collect(batch: list[AccessUser]) -> bool:
            found.update((u.seat_uid, u) for u in batch if u.seat_uid in wanted)
            return wanted <= found.keys()

        _, complete = await self._list_users(
            {}, keep=lambda item: item.get("seat_uid") in wanted, stop=collect
        )
        return found, complete or wanted <= found.keys()

    async def list_page(self, page: int, *, per_page: int = PER_PAGE, lane: Lane = "sync") -> UserPage:
        """One page of the whole user list (for the seat directory)."""
        params = {"page": page, "per_page": per_page}
        data, _ = await self._call("GET", self._path("users"), lane=lane, params=params)
        raw = data.get("result")
        raw = raw if isinstance(raw, list) else []
        holders, facts = [], []
        for item in raw:
            if isinstance(item, Mapping):
                uid, email = item.get("seat_uid"), item.get("email")
                if isinstance(uid, str) and SEAT_UID_RE.fullmatch(uid):
                    facts.append((uid, fact(item)))
                    if isinstance(email, str) and email:
                        holders.append((uid, email))
        info = data.get("result_info") or {}
        total = info.get("total_pages") if isinstance(info, Mapping) else None
        return UserPage(holders, len(raw), int(total) if isinstance(total, int | float) else None, facts)

    async def each_user_page(self, each: Callable[[list[AccessUser]], None]) -> bool:
        """Every user, one page at a time into `each`; False when CLOUDFLARE_MAX_PAGES cut it short."""
        for page in range(1, self.max_pages + 1):
            params = {"page": page, "per_page": PER_PAGE}
            data, ray = await self._call("GET", self._path("users"), params=params)
            raw = data.get("result")
            raw = [i for i in raw if isinstance(i, Mapping)] if isinstance(raw, list) else []
            each(self._parse(AccessUser, raw, ray))
            total_pages = (data.get("result_info") or {}).get("total_pages")
            last = page >= total_pages if isinstance(total_pages, int | float) else len(raw) < PER_PAGE
            if last:
                return True
        return False

    async def ping(self) -> None:
        """One cheap read-only call (first page, one user) to prove credentials and reachability."""
        await self._call("GET", self._path("users"), params={"page": 1, "per_page": 1})

    # -- internals -------------------------------------------------------------------------

    def _path(self, what: str) -> str:
        return f"accounts/{self.account_id}/access/{what}"

    @staticmethod
    def _check_updates(updates: Sequence[SeatUpdate]) -> list[SeatUpdate]:
        if not updates:
            raise InvalidRequest("no seats to update")
        if not all(isinstance(update, SeatUpdate) for update in updates):
            raise TypeError("update_seats takes SeatUpdate objects")
        return list(updates)

    async def _list_users(
        self,
        query: dict[str, Any],
        *,
        keep: Callable[[Mapping[str, Any]], bool],
        stop: Callable[[list[AccessUser]], bool] | None = None,
    ) -> tuple[list[AccessUser], bool]:
        """Follow pages to the end (bounded); only items passing `keep` are parsed into models.
        Also says whether the listing reached its end (False: stopped by `stop` or the page cap)."""
        users: list[AccessUser] = []
        for page in range(1, self.max_pages + 1):
            params = {**query, "page": page, "per_page": PER_PAGE}
            data, ray = await self._call("GET", self._path("users"), params=params)
            raw = data.get("result")
            raw = raw if isinstance(raw, list) else []
            batch = self._parse(AccessUser, [i for i in raw if isinstance(i, Mapping) and keep(i)], ray)
            users.extend(batch)
            if stop is not None and stop(batch):
                return users, False
            info = data.get("result_info") or {}
            total_pages = info.get("total_pages")
            if isinstance(total_pages, int | float):
                if page >= total_pages:
                    return users, True
            elif len(raw) < PER_PAGE:
                return users, True
        log.warning("user listing stopped at %d pages (CLOUDFLARE_MAX_PAGES)", self.max_pages)
        return users, False

    @staticmethod
    def _parse(model: type[M], result: Any, ray: str | None) -> list[M]:
        if not isinstance(result, list):
            return []
        parsed = []
        for item in result:
            try:
                parsed.append(model.model_validate(item).model_copy(update={"cf_ray": ray}))
            except ValidationError:
                raise SeatsError(
                    f"Cloudflare returned a {model.__name__} this bot cannot read", cf_ray=ray
                ) from None
        return parsed

    async def _call(
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
                        wait = None if lane == "sync" else self._budget_wait
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
        return self._envelope(response, ray), ray

    @staticmethod
    def _log(
        method: str, path: str, status: int | None, attempt: int, ray: str | None, started: float
    ) -> None:
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

    @staticmethod
    def _envelope(response: httpx.Response, ray: str | None) -> dict[str, Any]:
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
