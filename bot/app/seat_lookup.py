"""Seat-UID look-ups that cost the same at 100 users and at 100,000, and never a false "no such seat".

With a ready seat directory: the record's email, then one `GET /access/users?email=` that must show
the same seat UID (so the card shows Cloudflare's current state and a stale record never sends the
wrong seat): at most 2 Cloudflare requests per UID, found or not. A UID the directory does not know
(or that its holder no longer has) is answered from the directory with no scan: held by nobody at
the last sync, N minutes ago, and `/seat sync` brings in a seat taken since. A scan per unknown UID
would cost up to CLOUDFLARE_MAX_PAGES requests each, so a few typos could drain the token's budget
(issue 18). Only without a directory (off, or its first sync still running) does a bounded scan
run; a UID is then reported as held by nobody only when a complete listing says so, and a listing
cut short says the look-up could not be completed. Every fresh answer from Cloudflare is written
through to the directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.domain.idle import fact
from bot.domain.models import AccessUser
from bot.domain.spend import charged
from bot.errors import SeatsError, StoreUnavailable
from bot.state.directory import SeatDirectory

NOBODY = "no Zero Trust user holds this seat UID."
SYNC_HINT = "A seat taken since the last sync appears after the next one: run `/seat sync`, then try again."
INCOMPLETE = "look-up could not be completed"


class Cloudflare(Protocol):
    max_pages: int

    async def find_users(self, *, email: str) -> list[AccessUser]: ...

    async def scan_seat_uids(self, seat_uids: Collection[str]) -> tuple[dict[str, AccessUser], bool]: ...


Missing = Literal["nobody", "incomplete", "error"]


@dataclass
class UidAnswers:
    found: dict[str, AccessUser] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    directory_age: float | None = None  # seconds, when the directory answered (and Cloudflare confirmed)
    unknown: int = 0  # UIDs the directory answered as held by nobody (no scan): say how to refresh
    # why a UID has no answer: nobody holds it (a complete listing, or the directory and Cloudflare
    # just now), or it could not be told (a listing cut short, Cloudflare failing)
    missing: dict[str, Missing] = field(default_factory=dict)
    # what Cloudflare holds now for each email a caller named (`by_uids(emails=...)`)
    by_email: dict[str, list[AccessUser]] = field(default_factory=dict)
    failed: dict[str, SeatsError | None] = field(default_factory=dict)  # None: a listing cut short


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

    async def by_uids(self, uids: Sequence[str], *, emails: Mapping[str, str] | None = None) -> UidAnswers:
        """`emails`: the email each UID was last seen with (a schedule's card): confirmed first, one
        request each, exactly as a directory record is; a UID that answer does not show goes on to the
        directory or the scan. Work that acts later knows its people's emails, so it finds their seats
        at any account size, with or without the directory."""
        answers = UidAnswers()
        scan = list(dict.fromkeys(uids))
        hinted = {uid: e for uid, e in (emails or {}).items() if uid in scan and e}
        if hinted:
            seen: dict[str, AccessUser] = {}
            confirmed = await asyncio.gather(
                *(self._confirm(u, e, answers, seen, stale=False) for u, e in hinted.items())
            )
            done = {uid for uid, ok in zip(hinted, confirmed, strict=True) if ok}
            scan = [uid for uid in scan if uid not in done]
        if self.directory is not None and scan:
            try:
                snapshot = await self.directory.lookup(scan)
            except StoreUnavailable:
                snapshot = None  # no directory right now: scan as without one
            if snapshot is not None and snapshot.synced_at is not None:
                self._from_directory(snapshot.synced_at, snapshot.emails, answers)
                await self._confirm_all(snapshot.emails, answers)
                scan = []  # a ready directory answers every UID: never a scan per unknown UID
        if scan:
            await self._scan(scan, answers)
        return answers

    def _from_directory(self, synced_at: float, emails: dict[str, str | None], answers: UidAnswers) -> None:
        answers.directory_age = self._clock() - synced_at
        age = age_text(answers.directory_age)
        for uid, email in emails.items():
            if not email:
                answers.problems[uid] = (
                    f"{uid}: no Zero Trust user held this seat UID at the last sync ({age} ago)."
                )
                answers.missing[uid] = "nobody"
                answers.unknown += 1

    async def _confirm_all(self, emails: dict[str, str | None], answers: UidAnswers) -> None:
        """One look-up per recorded email; a UID unknown to the directory that one of those answers
        shows after all (the same person's new seat) is found too."""
        known = {uid: email for uid, email in emails.items() if email}
        seen: dict[str, AccessUser] = {}
        confirmed = await asyncio.gather(*(self._confirm(uid, e, answers, seen) for uid, e in known.items()))
        age = age_text(answers.directory_age or 0.0)
        for (uid, email), ok in zip(known.items(), confirmed, strict=True):
            if not ok:
                answers.problems[uid] = (
                    f"{uid}: {email} held this seat UID at the last sync ({age} ago) and no "
                    "longer does (Cloudflare, just now)."
                )
                answers.missing[uid] = "nobody"
                answers.unknown += 1
        for uid in [u for u in emails if u in seen and u not in answers.found]:
            answers.found[uid] = seen[uid]
            answers.problems.pop(uid, None)
            answers.missing.pop(uid, None)
            answers.unknown -= 1

    async def _confirm(
        self, uid: str, email: str, answers: UidAnswers, seen: dict[str, AccessUser], *, stale: bool = True
    ) -> bool:
        """Cloudflare's current record for the directory's email; False if it no longer shows this UID."""
        async with self._limit:
            try:
                users = await self.seats.find_users(email=email)
            except SeatsError as exc:
                answers.problems[uid] = f"{uid}: Cloudflare look-up failed: {exc.describe()}"
                answers.missing[uid] = "error"
                answers.failed[uid] = exc
                return True  # answered (with a problem): no scan on top of a failing Cloudflare
        answers.by_email[email.casefold()] = users
        await self.remember(users)
        seen.update((str(u.seat_uid), u) for u in users if u.seat_uid)
        match = [u for u in users if u.seat_uid == uid]
        if match:
            answers.found[uid] = match[0]
            return True
        if stale and self.directory is not None:
            await self.directory.forget(uid)  # stale: the seat moved or its user left since the sync
        return False

    async def _scan(self, uids: list[str], answers: UidAnswers) -> None:
        try:
            # up to CLOUDFLARE_MAX_PAGES requests for what is most often a typo: on the background
            # share of the budget, so scans never take the room revokes of known seats need
            with charged("bulk"):
                found, complete = await self.seats.scan_seat_uids(uids)
        except SeatsError as exc:
            for uid in uids:
                answers.problems[uid] = f"{uid}: Cloudflare look-up failed: {exc.describe()}"
                answers.missing[uid] = "error"
                answers.failed[uid] = exc
            return
        await self.remember(list(found.values()))
        for uid in uids:
            if uid in found:
                answers.found[uid] = found[uid]
            elif complete:
                answers.problems[uid] = f"{uid}: {NOBODY}"
                answers.missing[uid] = "nobody"
            else:
                answers.problems[uid] = f"{uid}: {INCOMPLETE}: {self._why_incomplete()}"
                answers.missing[uid] = "incomplete"
                answers.failed[uid] = None

    def _why_incomplete(self) -> str:
        pages = self.seats.max_pages
        cut = f"the scan stops after {pages:,} pages ({pages * 100:,} users, CLOUDFLARE_MAX_PAGES)"
        if self.directory is None:
            return f"{cut} and the seat directory is off (SEATBOT_DIRECTORY_REFRESH_SECONDS=0)."
        return f"{cut} and the seat directory is still being built; try again in a few minutes."
