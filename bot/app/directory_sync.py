"""Keep the seat directory fresh: one full listing of Access users at a time, across every process.

The periodic refresh is a job on the job runner (bot/jobs/directory.py) that calls `due()` and
`run_once()`; `maybe_refresh()` (`/seat sync`, a look-up that needs a fresh directory) starts a sync
in the background when the directory is older than `refresh_seconds` (or empty). Either way the
lease lets one process sync at a time. A sync lists page 1, learns `total_pages`, then lists
the rest with bounded concurrency on the budget's sync lane, writes each page to its build keys
and swaps them in when the listing is complete. A sync that cannot finish leaves the previous
directory in place and records why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from bot.app.seat_lookup import age_text
from bot.cloudflare.budget import Lane
from bot.cloudflare.client import PER_PAGE, UserPage
from bot.domain.models import new_id
from bot.domain.outcomes import Notice
from bot.errors import SeatbotError
from bot.state.directory import DirectoryStatus, SeatDirectory

log = logging.getLogger("seatbot.directory")
RETRY_AFTER_FAILURE = 300.0  # seconds: a sync that failed (say at page 700) is not restarted sooner
OFF = "The seat directory is off (SEATBOT_DIRECTORY_REFRESH_SECONDS=0): seat UIDs are found by scanning."


class PageSource(Protocol):
    async def list_page(self, page: int, *, per_page: int = PER_PAGE, lane: Lane = "sync") -> UserPage: ...


class SyncAborted(SeatbotError):
    """The sync lost its lease (another process took over) or could not finish its listing."""


@dataclass(frozen=True)
class SyncResult:
    users: int
    pages: int
    requests: int
    seconds: float


Start = Literal["started", "running", "fresh", "off"]


class DirectorySync:
    """Runs syncs for one process; any number of processes may hold one, the lease picks who syncs."""

    def __init__(
        self,
        *,
        directory: SeatDirectory,
        seats: PageSource,
        refresh_seconds: float = 900.0,
        concurrency: int = 4,
        lease_seconds: float = 60.0,
        per_page: int = PER_PAGE,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.directory = directory
        self.seats = seats
        self.refresh_seconds = refresh_seconds
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.per_page = per_page
        self._clock = clock
        self._sleep = sleep
        self.task: asyncio.Task[SyncResult | None] | None = None

    @property
    def enabled(self) -> bool:
        return self.refresh_seconds > 0

    async def status(self) -> DirectoryStatus:
        return await self.directory.status(enabled=self.enabled)

    async def maybe_refresh(self, *, force: bool = False) -> Start:
        """Start a sync in the background if one is due (or `force`) and nobody else is syncing."""
        if not self.enabled:
            return "off"
        if self.task is not None and not self.task.done():
            return "running"
        status = await self.status()
        if status.state == "syncing":
            return "running"
        age = None if status.synced_at is None else self._clock() - status.synced_at
        if not force and age is not None and age < self.refresh_seconds:
            return "fresh"
        token = new_id()
        if not await self.directory.acquire_lease(token, ttl=self.lease_seconds):
            return "running"
        self.task = asyncio.create_task(self._guarded(token), name="seat-directory-sync")
        return "started"

    async def due(self) -> bool:
        status = await self.status()
        if not self.enabled or status.state == "syncing":
            return False
        failed_at = status.last.get("last_at")
        if failed_at is not None:  # a failed sync is retried after a pause, not every check
            try:
                if self._clock() - float(failed_at) < min(self.refresh_seconds, RETRY_AFTER_FAILURE):
                    return False
            except ValueError:
                pass
        return status.synced_at is None or self._clock() - status.synced_at >= self.refresh_seconds

    async def aclose(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    # -- one sync --------------------------------------------------------------------------

    async def run_once(self) -> SyncResult | None:
        """Sync now in this task if the lease is free; None if another process holds it."""
        token = new_id()
        if not await self.directory.acquire_lease(token, ttl=self.lease_seconds):
            return None
        return await self._guarded(token)

    async def _guarded(self, token: str) -> SyncResult | None:
        started = self._clock()
        try:
            return await self._sync(token, started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = str(exc) if isinstance(exc, SeatbotError) else type(exc).__name__
            log.warning("directory sync failed: %s", why)
            await self.directory.failed(error=why, at=self._clock())
            return None
        finally:
            await self.directory.release_lease(token)

    async def _sync(self, token: str, started: float) -> SyncResult:
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(token, lost))
        requests = 0
        users = 0
        ttl = self.lease_seconds * 3  # build keys outlive a short stall, not a dead process

        async def fetch(page: int) -> UserPage:
            nonlocal requests, users
            if lost.is_set():
                raise SyncAborted("lost the lease: another process took over")
            requests += 1
            result = await self.seats.list_page(page, per_page=self.per_page, lane="sync")
            await self.directory.add(token, result.holders, ttl=ttl, facts=result.facts)
            users += result.count
            return result

        try:
            first = await fetch(1)
            total = first.total_pages
            pages = 1
            await self.directory.progress(
                token, pages=1, total_pages=total or 0, users=users, started=started
            )
            if total is not None:
                limit = asyncio.Semaphore(self.concurrency)

                async def one(page: int) -> None:
                    nonlocal pages
                    async with limit:
                        await fetch(page)
                        pages += 1
                        if pages % 10 == 0:
                            await self.directory.progress(token, pages=pages, users=users)

                try:  # a failed page cancels the others
                    async with asyncio.TaskGroup() as group:
                        for page in range(2, total + 1):
                            group.create_task(one(page))
                except ExceptionGroup as failed:
                    raise failed.exceptions[0] from None
            else:  # no result_info: follow pages until a short one
                last = first
                while last.count >= self.per_page:
                    last = await fetch(pages + 1)
                    pages += 1
            seconds = self._clock() - started
            swapped = await self.directory.swap(
                token,
                users=users,
                pages=pages,
                requests=requests,
                seconds=round(seconds, 1),
                synced_at=self._clock(),
            )
            if not swapped:
                raise SyncAborted("lost the lease before the swap: the directory was left as it was")
            log.info("directory synced: %d users, %d pages, %.1f s", users, pages, seconds)
            return SyncResult(users, pages, requests, seconds)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, token: str, lost: asyncio.Event) -> None:
        while True:
            await self._sleep(self.lease_seconds / 3)
            try:
                if not await self.directory.renew_lease(token, ttl=self.lease_seconds):
                    lost.set()
                    return
            except Exception:
                log.warning("could not renew the directory lease", exc_info=True)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(status: DirectoryStatus, *, now: float) -> str:
    """One paragraph on the directory for people: state, size, age, last sync's figures or error."""
    if status.state == "off":
        return OFF
    parts = []
    if status.synced_at is not None:
        last = status.last
        parts.append(
            f"Seat directory: {status.users:,} users, synced {_when(status.synced_at)} "
            f"({age_text(now - status.synced_at)} ago) in {last.get('seconds', '?')} s with "
            f"{last.get('requests', '?')} Cloudflare requests ({last.get('pages', '?')} pages)."
        )
    else:
        parts.append("Seat directory: empty (no complete sync yet); seat UIDs are found by scanning.")
    if status.progress:
        p = status.progress
        total = p.get("total_pages", "0")
        of = f" of {total}" if total not in ("", "0") else ""
        parts.append(
            f"A sync is running on {p.get('holder', '?')}: {p.get('pages', '0')}{of} pages, "
            f"{int(p.get('users', '0') or 0):,} users so far."
        )
    if "last_error" in status.last:
        parts.append(f"The last sync could not finish: {status.last['last_error']}.")
    return " ".join(parts)


async def sync_command(sync: DirectorySync | None, *, wait: float = 10.0) -> Notice:
    """`/seat sync`: start a refresh now (or say one runs), then its result or its progress."""
    if sync is None or not sync.enabled:
        return Notice(OFF)
    started = await sync.maybe_refresh(force=True)
    task = sync.task
    if task is not None and (started == "started" or not task.done()):  # ours: wait for its result
        done, _ = await asyncio.wait({task}, timeout=wait)
        status = await sync.status()
        if done:
            result = task.result()
            if result is None:
                return Notice("Directory sync failed. " + describe(status, now=time.time()), kind="error")
            return Notice(
                f"Directory synced: {result.users:,} users, {result.pages:,} pages, "
                f"{result.requests:,} Cloudflare requests, {result.seconds:.1f} s."
            )
        return Notice(
            "Directory sync started; it goes on in the background (`/seat sync` again shows its progress). "
            + describe(status, now=time.time())
        )
    status = await sync.status()
    return Notice("A directory sync is already running. " + describe(status, now=time.time()))


async def directory_health(sync: DirectorySync) -> dict[str, object]:
    """The `directory` object of GET /healthz; syncing or empty is not an outage."""
    try:
        status = await sync.status()
    except SeatbotError:
        return {"state": "unknown", "users": 0, "synced_at": None}
    synced = None
    if status.synced_at is not None:
        synced = datetime.fromtimestamp(status.synced_at, UTC).isoformat(timespec="seconds")
    return {"state": status.state, "users": status.users, "synced_at": synced}
