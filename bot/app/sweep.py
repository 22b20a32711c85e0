"""`/seat idle` and the "Free N idle seats" sweep, in plain async code that knows nothing of Slack.

report: list every user (directory, or a scan) → idle rule → counts + the sweep's pending record
sweep:  (claimed by SeatFlow like any card) → take the list once → re-check each seat → PATCH in
        chunks within the rate budget → one audit event per seat → outcome
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from bot.app.idle_source import UserSource
from bot.app.sweep_run import LEASE, Announce, Audit, Continuer, SeatUpdater, Sweeping, Sweeps
from bot.domain.idle import (
    Exclusions,
    IdleReport,
    IdleRule,
    IdleTally,
    SourceChanged,
    SourceInfo,
)
from bot.domain.models import Pending, new_id
from bot.domain.outcomes import Notice
from bot.domain.parse import Command
from bot.domain.policy import Policy
from bot.errors import (
    SeatsError,
)
from bot.executor import Executor
from bot.state.sweeps import SweepList

log = logging.getLogger("seatbot.sweep")


class Pendings(Protocol):
    async def put(self, pending: Pending, *, ttl: int) -> None: ...


class IdleFlow(Sweeping):
    def __init__(
        self,
        *,
        source: UserSource,
        seats: SeatUpdater,
        pendings: Pendings,
        sweeps: Sweeps,
        audit: Audit,
        policy: Policy,
        days: int = 30,
        exclude: Exclusions | None = None,
        clock: Callable[[], float] = time.time,
        later: Continuer | None = None,
        announce: Announce | None = None,
        retry_seconds: float = 60.0,
        lease: float = LEASE,
    ) -> None:
        self.source = source
        self.seats = seats
        self.executor = Executor(seats)
        self.pendings = pendings
        self.sweeps = sweeps
        self.audit = audit
        self.policy = policy
        self.days = days
        self.exclude = exclude or Exclusions()
        self._clock = clock
        self.later = later  # set when a job runner exists: budget-paused sweeps continue on it
        self.announce = announce  # posts a continued sweep's outcome (set by the Slack wiring)
        self.retry_seconds = retry_seconds
        self.lease = lease  # a sweep whose runner died is taken over by a job runner within this

    def rule(self, days: int | None = None) -> IdleRule:
        return IdleRule(days or self.days, self._clock(), self.exclude)

    async def tally(self, days: int | None = None) -> tuple[IdleTally, SourceInfo]:
        for attempt in range(3):
            tally = IdleTally(self.rule(days))
            try:
                info = await self.source.scan(tally.add)
            except SourceChanged:  # a sync swapped in mid-read: count again on the new one
                if attempt == 2:
                    raise
                continue
            tally.idle = tally.sorted()
            return tally, info
        raise AssertionError("unreachable")

    # -- /seat idle --------------------------------------------------------------------------

    async def report(self, *, user: str, channel: str, cmd: Command) -> IdleReport | Notice:
        try:
            tally, info = await self.tally(cmd.days)
        except SeatsError as exc:
            return Notice(f"Could not list the account's users: {exc.describe()}", kind="error")
        rule = tally.rule
        idle = tuple(tally.idle)
        no_button = None
        if not idle:
            no_button = "Nothing to free."
        elif not self.policy.channel_allowed(channel):
            no_button = "Seats can't be freed from this channel; use one listed in SEATBOT_CHANNELS."
        elif self.policy.require_reason and not cmd.reason:
            no_button = f"To free them, a reason is required: `/seat idle {rule.days} --reason <text>`."
        pending, audit_ok = None, True
        if no_button is None:
            ttl = self.policy.confirm_ttl
            pending = Pending(
                id=new_id(),
                requester=user,
                channel=channel,
                targets=[],
                reason=cmd.reason,
                created_at=rule.now,
                expires_at=rule.now + ttl,
                two_person=self.policy.two_person,
                sweep=len(idle),
            )
            await self.sweeps.put(pending.id, SweepList(rule.days, idle), ttl=ttl)
            await self.pendings.put(pending, ttl=ttl)
            audit_ok = await self.audit.record(
                "requested",
                id=pending.id,
                user=user,
                channel=channel,
                sweep=len(idle),
                days=rule.days,
                reason=cmd.reason,
            )
        return IdleReport(
            requester=user,
            channel=channel,
            days=rule.days,
            now=rule.now,
            users=tally.users,
            in_use=tally.in_use,
            excluded=tally.excluded,
            idle=idle,
            source=info,
            pending=pending,
            no_button=no_button,
            audit_ok=audit_ok,
        )

    async def scheduled_report(self, *, channel: str, schedule: str) -> IdleReport:
        """The periodic report: counts and the idle list, with a button that asks for a card."""
        tally, info = await self.tally()
        return IdleReport(
            requester="",
            channel=channel,
            days=tally.rule.days,
            now=tally.rule.now,
            users=tally.users,
            in_use=tally.in_use,
            excluded=tally.excluded,
            idle=tuple(tally.idle),
            source=info,
            no_button=None if tally.idle else "Nothing to free.",
            schedule=schedule,
        )
