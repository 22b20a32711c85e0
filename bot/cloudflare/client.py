"""The Cloudflare adapter: update Zero Trust seats and find Access users.

The operations and what their answers mean; the HTTP under them (pooled client, retries honouring
Retry-After, the shared rate budget, Cloudflare's envelope → `bot.errors.SeatsError`) is
bot/cloudflare/transport.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import httpx
from pydantic import ValidationError

from bot import metrics
from bot.cloudflare.budget import Lane, RateBudget
from bot.cloudflare.transport import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, CloudflareHTTP, Sleep
from bot.config import Settings
from bot.domain.idle import fact
from bot.domain.models import SEAT_UID_RE, AccessUser, Seat, SeatUpdate
from bot.errors import InvalidRequest, SeatsError

log = logging.getLogger("seatbot.cloudflare")

PER_PAGE = 100

M = TypeVar("M", Seat, AccessUser)


@dataclass(frozen=True)
class UserPage:
    """One page of the user list, reduced to what the seat directory keeps."""

    holders: list[tuple[str, str]]  # (seat UID, email) of each listed user that has both
    count: int  # users on the page
    total_pages: int | None  # from result_info, when Cloudflare says
    facts: list[tuple[str, str]] = field(default_factory=list)  # (seat UID, bot.domain.idle.fact) per user


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
        self.budget = budget
        self.http = CloudflareHTTP(
            auth_headers=auth_headers,
            base_url=base_url,
            retry_deadline=retry_deadline,
            max_attempts=max_attempts,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            clock=clock,
            budget=budget,
            budget_wait=budget_wait,
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
        await self.http.aclose()

    # -- operations ------------------------------------------------------------------------

    async def update_seats(self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive") -> list[Seat]:
        """PATCH the seats in chunks; return Cloudflare's seats in request order."""
        checked = self._check_updates(updates)
        seats: list[Seat] = []
        for start in range(0, len(checked), self.chunk_size):
            chunk = checked[start : start + self.chunk_size]
            body = [update.model_dump() for update in chunk]
            try:
                data, ray = await self.http.call("PATCH", self._path("seats"), lane=lane, json=body)
                seats.extend(done := self._parse(Seat, data.get("result"), ray))
                metrics.seats_changed(done, lane)
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
        if not all(SEAT_UID_RE.fullmatch(uid) for uid in seat_uids):
            raise InvalidRequest("seat_uid must be 1-36 characters of letters, digits and '-'")
        wanted = {uid.lower(): uid for uid in seat_uids}  # matched case-insensitively, keyed as asked
        if not wanted:
            return {}, True
        found: dict[str, AccessUser] = {}

        def held(uid: object) -> str | None:
            return wanted.get(uid.lower()) if isinstance(uid, str) else None

        def collect(batch: list[AccessUser]) -> bool:
            found.update((asked, u) for u in batch if (asked := held(u.seat_uid)))
            return len(found) == len(wanted)

        _, complete = await self._list_users(
            {}, keep=lambda item: held(item.get("seat_uid")) is not None, stop=collect
        )
        return found, complete or len(found) == len(wanted)

    async def list_page(self, page: int, *, per_page: int = PER_PAGE, lane: Lane = "sync") -> UserPage:
        """One page of the whole user list (for the seat directory)."""
        params = {"page": page, "per_page": per_page}
        data, _ = await self.http.call("GET", self._path("users"), lane=lane, params=params)
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
            data, ray = await self.http.call("GET", self._path("users"), params=params)
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
        await self.http.call("GET", self._path("users"), params={"page": 1, "per_page": 1})

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
            data, ray = await self.http.call("GET", self._path("users"), params=params)
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
