"""The App Home overview as plain data: what an admin (or anyone else) sees on the bot's Home tab."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.app.sweep import IdleFlow
from bot.app.sweep_run import Audit
from bot.domain.idle import SourceInfo
from bot.domain.policy import Authorizer
from bot.domain.schedule_outcomes import ScheduleList
from bot.errors import SeatsError, StoreUnavailable
from bot.state.outbox import Undelivered as Kept
from bot.state.schedules import Entry

log = logging.getLogger("seatbot.home")

RECENT_EVENTS = 10
SCHEDULED = 16  # one more than the Home shows, so it can say there are more


class RecentAudit(Audit, Protocol):
    async def recent(self, count: int) -> list[dict[str, Any]]: ...


class Undelivered(Protocol):
    """Messages Slack did not take yet (bot.state.outbox.OutboxStore)."""

    async def items(self) -> list[Kept]: ...


class Scheduled(Protocol):
    """The scheduled removals (bot.app.schedule.Schedules)."""

    async def listing(self, limit: int = 40) -> ScheduleList: ...


@dataclass(frozen=True)
class SeatCounts:
    users: int
    in_use: int
    idle: int
    excluded: int
    days: int
    source: SourceInfo


@dataclass(frozen=True)
class ScheduledItem:
    """A scheduled removal, with the opaque id its cancel button carries."""

    id: str
    targets: str
    at: float
    by: str
    reason: str | None = None


@dataclass(frozen=True)
class HomeOverview:
    user: str
    is_admin: bool
    admins: tuple[str, ...]
    admin_groups: tuple[str, ...]
    now: float
    counts: SeatCounts | None = None
    counts_error: str | None = None
    events: tuple[dict[str, Any], ...] = ()
    events_error: str | None = None
    scheduled: tuple[ScheduledItem, ...] | None = None  # None: this deployment has no scheduler
    undelivered: tuple[Kept, ...] = ()  # messages Slack refused, kept in Redis and tried again


class Home:
    """Builds overviews; the idle counts are cached briefly so opening the tab costs nothing upstream."""

    def __init__(
        self,
        *,
        idle: IdleFlow,
        audit: RecentAudit,
        authorizer: Authorizer,
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
        schedules: Scheduled | None = None,
    ) -> None:
        self.idle = idle
        self.schedules = schedules
        self.audit = audit
        self.auth = authorizer
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[float, SeatCounts] | None = None
        self.undelivered: Undelivered | None = None  # set by the Slack wiring

    async def counts(self) -> SeatCounts:
        now = self._clock()
        if self._cached and now - self._cached[0] < self._cache_seconds:
            return self._cached[1]
        tally, info = await self.idle.tally()
        counts = SeatCounts(tally.users, tally.in_use, len(tally.idle), tally.excluded, tally.rule.days, info)
        self._cached = (now, counts)
        return counts

    async def overview(self, user: str) -> HomeOverview:
        policy = self.auth.policy
        is_admin = policy.configured and await self.auth.is_admin(user)
        base = HomeOverview(
            user=user,
            is_admin=is_admin,
            admins=tuple(sorted(policy.admins)),
            admin_groups=policy.admin_groups,
            now=self._clock(),
        )
        if not is_admin:
            return base
        counts, counts_error, events_error = None, None, None
        events: tuple[dict[str, Any], ...] = ()
        try:
            counts = await self.counts()
        except SeatsError as exc:
            counts_error = f"Could not list the account's users: {exc.describe()}"
        try:
            events = tuple(await self.audit.recent(RECENT_EVENTS))
        except StoreUnavailable:
            events_error = "The audit trail is unavailable right now (Redis)."
        scheduled = None
        if self.schedules is not None:
            try:
                scheduled = tuple(_item(e) for e in (await self.schedules.listing(SCHEDULED)).entries)
            except StoreUnavailable:
                scheduled = None
        undelivered: tuple[Kept, ...] = ()
        if self.undelivered is not None:
            try:
                undelivered = tuple(await self.undelivered.items())
            except StoreUnavailable:
                undelivered = ()
        return dataclasses.replace(
            base,
            undelivered=undelivered,
            counts=counts,
            counts_error=counts_error,
            events=events,
            events_error=events_error,
            scheduled=scheduled,
        )


def _item(entry: Entry) -> ScheduledItem:
    targets = ", ".join(t.email or t.seat_uid for t in entry.pending.targets)
    return ScheduledItem(entry.id, targets, entry.at, entry.pending.requester, entry.pending.reason)
