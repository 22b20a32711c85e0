"""Where `/seat idle` reads the account: the seat directory (no Cloudflare request when it is warm),
or a scan of Cloudflare's user list (`ScanSource`) when the directory is off or has never finished a sync."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from bot.app.directory_sync import DirectorySync
from bot.app.seat_lookup import age_text
from bot.domain.idle import Partial, SourceInfo, UserFacts
from bot.domain.models import AccessUser
from bot.state.directory import DirectoryStatus
from bot.state.seat_facts import SeatFacts


class UserSource(Protocol):
    """Where the idle rule reads the account's users: the seat directory, or a Cloudflare scan."""

    async def scan(self, each: Callable[[Sequence[UserFacts]], None]) -> SourceInfo: ...

    async def current(self, seat_uids: Sequence[str]) -> Mapping[str, UserFacts]: ...

    async def freed(self, seat_uids: Sequence[str]) -> None: ...


class UserPages(Protocol):
    async def each_user_page(self, each: Callable[[list[AccessUser]], None]) -> bool: ...


class ScanSource:
    """No directory: page through Cloudflare's user list (bounded by CLOUDFLARE_MAX_PAGES)."""

    def __init__(self, pages: UserPages, *, clock: Callable[[], float] = time.time) -> None:
        self._pages = pages
        self._clock = clock

    async def scan(self, each: Callable[[Sequence[UserFacts]], None]) -> SourceInfo:
        started = self._clock()
        complete = await self._pages.each_user_page(each)
        note = None if complete else "the listing stopped at CLOUDFLARE_MAX_PAGES: counts are partial"
        return SourceInfo("scan", started, complete, note)

    async def current(self, seat_uids: Sequence[str]) -> Mapping[str, UserFacts]:
        wanted = set(seat_uids)
        found: dict[str, UserFacts] = {}

        def keep(batch: Sequence[UserFacts]) -> None:
            found.update((str(u.seat_uid), u) for u in batch if u.seat_uid in wanted)

        info = await self.scan(keep)
        return found if info.complete else Partial(found)

    async def freed(self, seat_uids: Sequence[str]) -> None:
        """Nothing is kept between scans."""


class DirectorySource:
    """Refreshes the directory first when it is older than its refresh period (waiting a bounded time
    for this process's sync), then reads its facts; falls back to `fallback` without a directory."""

    def __init__(
        self,
        *,
        sync: DirectorySync,
        facts: SeatFacts,
        fallback: UserSource,
        wait: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sync = sync
        self.facts = facts
        self.fallback = fallback
        self.wait = wait
        self._clock = clock

    async def _fresh(self) -> tuple[DirectoryStatus | None, str | None]:
        """The directory to read (None: there is none to read), and why not when there is none."""
        if not self.sync.enabled:
            return None, "the seat directory is off (SEATBOT_DIRECTORY_REFRESH_SECONDS=0)"
        status = await self.sync.status()
        if status.synced_at is None or self._clock() - status.synced_at >= self.sync.refresh_seconds:
            await self.sync.maybe_refresh()
            task = self.sync.task
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=self.wait)
            status = await self.sync.status()
        if status.synced_at is None:
            return None, "the seat directory's first sync has not finished yet"
        return status, None

    async def scan(self, each: Callable[[Sequence[UserFacts]], None]) -> SourceInfo:
        status, why = await self._fresh()
        if status is None or status.synced_at is None:
            info = await self.fallback.scan(each)
            return dataclasses.replace(info, note="; ".join(n for n in (why, info.note) if n))
        await self.facts.scan(each)
        age = self._clock() - status.synced_at
        note = None
        if age >= self.sync.refresh_seconds:
            note = f"the directory is {age_text(age)} old: a refresh is running and did not finish in time"
        return SourceInfo("directory", status.synced_at, True, note)

    async def current(self, seat_uids: Sequence[str]) -> Mapping[str, UserFacts]:
        status, _ = await self._fresh()
        if status is None:
            return await self.fallback.current(seat_uids)
        return await self.facts.get(seat_uids)

    async def freed(self, seat_uids: Sequence[str]) -> None:
        await self.facts.freed(seat_uids)
