"""Seat-UID look-ups that cost the same at 100 users and at 100,000, and never a false "no such seat".

With a ready seat directory: the record's email, then one `GET /access/users?email=` that must show
the same seat UID (so the card shows Cloudflare's current state and a stale record never sends the
wrong seat): at most 2 Cloudflare requests per UID. Without a directory, or for a UID it does not
know (or knows wrongly), a bounded scan of the user list. A UID is reported as held by nobody only
when a complete listing says so; a listing cut short says the look-up could not be completed.
Every fresh answer from Cloudflare is written through to the directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.errors import SeatsError, StoreUnavailable
from bot.idle import fact
from bot.models import AccessUser
from bot.state.directory import SeatDirectory

NOBODY = "no Zero Trust user holds this seat UID."
INCOMPLETE = "look-up could not be completed"


class Cloudflare(Protocol):
    max_pages: int

    async def find_users(self, *, email: str) -> list[AccessUser]: ...

    async def scan_seat_uids(self, seat_uids: Collection[str]) -> tuple[dict[str, AccessUser], bool]: ...


@dataclass
class UidAnswers:
    found: dict[str, AccessUser] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    directory_age: float | None = None  # seconds, when the directory answered (and Cloudflare confirmed)


def _holders(users: Collection[AccessUser]) -> list[tuple[str, str]]:
    return [(u.seat_uid, u.email) for u in users if u.seat_uid and u.email]


def age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class SeatLookup:
    """Seat UID targets → users, through the seat directory when there is one."""

    def __init__(
        self,
        *,
        seats: Cloudflare,
        directory: SeatDirectory | None = None,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seats = seats
        self.directory = directory  # None: the directory is off, UID targets scan
        self._limit = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def remember(self, users: Collection[AccessUser]) -> None:
        """Write a fresh answer from Cloudflare through to the directory."""
        if self.directory is not None:
            facts = [(str(u.seat_uid), fact(u.model_dump())) for u in users if u.seat_uid]
            await self.directory.remember(_holders(users), facts)

    async def by_uids(self, uids: Sequence[str]) -> UidAnswers:
        answers = UidAnswers()
        scan = list(dict.fromkeys(uids))
        ready = False
        if self.directory is not None and scan:
            try:
                snapshot = await self.directory.lookup(scan)
            except StoreUnavailable:
                snapshot = None  # no directory right now: scan as without one
            if snapshot is not None and snapshot.synced_at is not None:
                ready = True
                answers.directory_age = self._clock() - snapshot.synced_at
                known = {uid: email for uid, email in snapshot.emails.items() if email}
                scan = [uid for uid in scan if uid not in known]
                confirmed = await asyncio.gather(
                    *(self._confirm(uid, e, answers) for uid, e in known.items())
                )
                scan += [uid for uid, ok in zip(known, confirmed, strict=True) if not ok]
        if scan:
            await self._scan(scan, answers, ready=ready)
        return answers

    async def _confirm(self, uid: str, email: str, answers: UidAnswers) -> bool:
        """Cloudflare's current record for the directory's email; False if it no longer shows this UID."""
        async with self._limit:
            try:
                users = await self.seats.find_users(email=email)
            except SeatsError as exc:
                answers.problems[uid] = f"{uid}: Cloudflare look-up failed: {exc.describe()}"
                return True  # answered (with a problem): no scan on top of a failing Cloudflare
        await self.remember(users)
        match = [u for u in users if u.seat_uid == uid]
        if match:
            answers.found[uid] = match[0]
            return True
        if self.directory is not None:
            await self.directory.forget(uid)  # stale: the seat moved or its user left since the sync
        return False

    async def _scan(self, uids: list[str], answers: UidAnswers, *, ready: bool) -> None:
        try:
            found, complete = await self.seats.scan_seat_uids(uids)
        except SeatsError as exc:
            for uid in uids:
                answers.problems[uid] = f"{uid}: Cloudflare look-up failed: {exc.describe()}"
            return
        await self.remember(list(found.values()))
        for uid in uids:
            if uid in found:
                answers.found[uid] = found[uid]
            elif complete:
                answers.problems[uid] = f"{uid}: {NOBODY}"
            else:
                answers.problems[uid] = f"{uid}: {INCOMPLETE}: {self._why_incomplete(ready)}"

    def _why_incomplete(self, ready: bool) -> str:
        pages = self.seats.max_pages
        cut = f"the scan stops after {pages:,} pages ({pages * 100:,} users, CLOUDFLARE_MAX_PAGES)"
        if self.directory is None:
            return f"{cut} and the seat directory is off (SEATBOT_DIRECTORY_REFRESH_SECONDS=0)."
        if ready:
            return (
                f"not in the seat directory and {cut}; if the seat is newer than the directory, "
                "run `/seat sync` and try again."
            )
        return f"{cut} and the seat directory is still being built; try again in a few minutes."
