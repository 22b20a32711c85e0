"""Targets → the Zero Trust users holding their seats: the look-up every revoke path shares.

`/seat status`, `/seat revoke` (now or `--at`) and the Workflow Builder step all resolve their
targets here, so a mention, an email and a seat UID mean the same seat wherever they are typed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.app.seat_lookup import SYNC_HINT, SeatLookup, age_text
from bot.domain.models import SEAT_UID_RE, AccessUser, PendingTarget
from bot.domain.parse import Target
from bot.domain.policy import Directory
from bot.errors import AuthenticationFailed, PermissionDenied, RateLimited, SeatsError, Unavailable

Found = list[tuple[str, AccessUser]]  # (the target as the card shows it, the user holding its seat)


@dataclass
class Resolution:
    """What the look-up found: the users, a line per other target, and which look-ups failed."""

    found: Found = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: str | None = None
    failures: list[SeatsError | None] = field(default_factory=list)  # None: a listing cut short
    duplicates: list[str] = field(default_factory=list)  # "<@U0BOB> is the same seat as bob@…"

    def advice(self) -> str:
        """What to do about the failed look-ups, in one sentence."""
        errors = [e for e in self.failures if e is not None]
        if any(isinstance(e, RateLimited) for e in errors):
            return "Cloudflare's request budget for the bot's token is used up: try again in a few minutes."
        if any(isinstance(e, AuthenticationFailed) for e in errors):
            return (
                "Cloudflare refused the bot's credentials: fix CLOUDFLARE_API_TOKEN (or the email and key) "
                "and run `python -m bot check`."
            )
        if any(isinstance(e, PermissionDenied) for e in errors):
            return (
                "The bot's Cloudflare token lacks a permission (Access: Audit Logs Read looks users up): "
                "fix the token and run `python -m bot check`."
            )
        if any(isinstance(e, Unavailable) for e in errors):
            return "Cloudflare did not answer in time: try again in a minute."
        if errors:
            return "Try again; if it keeps failing, run `python -m bot check`."
        return "Run `/seat sync` and try again, or use the person's email."

    def one_per_seat(self) -> None:
        """Targets naming the same seat (a mention and an email of one person) become one."""
        seen: dict[str, str] = {}
        kept: Found = []
        for label, user in self.found:
            uid = str(user.seat_uid)
            if uid in seen:
                self.duplicates.append(f"{label} is the same seat as {seen[uid]}.")
                continue
            seen[uid] = label
            kept.append((label, user))
        self.found = kept


class UserFinder(Protocol):
    async def find_users(self, *, email: str) -> list[AccessUser]: ...


def pending_target(label: str, user: AccessUser) -> PendingTarget:
    """What a card keeps of a resolved target: the seat and its state when the card was made."""
    return PendingTarget(
        label=label,
        seat_uid=str(user.seat_uid),
        email=user.email,
        name=user.name,
        access_seat=user.access_seat,
        gateway_seat=user.gateway_seat,
    )


class TargetResolver:
    def __init__(
        self, *, seats: UserFinder, directory: Directory, uids: SeatLookup, concurrency: int = 8
    ) -> None:
        self.seats = seats
        self.directory = directory
        self.uids = uids
        self.concurrency = concurrency

    async def resolve(self, targets: Sequence[Target]) -> tuple[Found, list[str], str | None]:
        """Each target → (label, the user holding its seat); every other target gets a problem line;
        and, when the seat directory answered, a note saying how old it is."""
        done = await self.lookup(targets)
        return done.found, done.problems, done.source

    async def lookup(self, targets: Sequence[Target]) -> Resolution:
        """`resolve`, also saying which look-ups failed (so no headline claims "nothing found")."""
        limit = asyncio.Semaphore(self.concurrency)
        uids = [t.value for t in targets if t.kind == "uid"]
        answers = await self.uids.by_uids(uids)
        source = None
        if answers.directory_age is not None:
            source = (
                f"Seat UIDs found in the seat directory (synced {age_text(answers.directory_age)} ago) "
                "and confirmed with Cloudflare."
            )
            if answers.unknown:
                source += " " + SYNC_HINT

        done = Resolution(source=source)

        async def one(target: Target) -> tuple[str, AccessUser] | str:
            if target.kind == "uid":  # an unknown UID is never sent: a typo far more often than a seat
                if target.value in answers.found:
                    return (target.value, answers.found[target.value])
                if target.value in answers.failed:
                    done.failures.append(answers.failed[target.value])
                return answers.problems[target.value]
            async with limit:
                email, label = target.value, target.value
                if target.kind == "mention":
                    label = f"<@{target.value}>"
                    found = await self.directory.email_of(target.value)
                    if not found:
                        return f"Slack user {target.value}: no email visible to the bot."
                    email = found.lower()
                try:
                    users = await self.seats.find_users(email=email)
                except SeatsError as exc:
                    done.failures.append(exc)
                    return f"{email}: Cloudflare look-up failed: {exc.describe()}"
                await self.uids.remember(users)
            holders = [u for u in users if u.seat_uid and SEAT_UID_RE.fullmatch(u.seat_uid)]
            if not holders:
                return f"{email}: no Zero Trust user with this email."
            if len(holders) > 1:
                return f"{email}: {len(holders)} Zero Trust users share this email; use their seat UIDs."
            return (label, holders[0])

        for item in await asyncio.gather(*(one(t) for t in targets)):
            if isinstance(item, str):
                done.problems.append(item)
            else:
                done.found.append(item)
        return done
