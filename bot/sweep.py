"""`/seat idle` and the "Free N idle seats" sweep, in plain async code that knows nothing of Slack.

report: list every user (directory, or a scan) → idle rule → counts + the sweep's pending record
sweep:  (claimed by SeatFlow like any card) → take the list once → re-check each seat → PATCH in
        chunks within the rate budget → one audit event per seat → outcome
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from bot.cloudflare.budget import Lane
from bot.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OutdatedRecord,
    PermissionDenied,
    RateLimited,
    SeatsError,
)
from bot.idle import (
    Exclusions,
    IdleReport,
    IdleRule,
    IdleSeat,
    IdleTally,
    SourceChanged,
    SourceInfo,
    SweepOutcome,
    SweepProgress,
    recheck,
)
from bot.idle_source import UserSource
from bot.models import AuditEvent, Pending, Seat, SeatUpdate, new_id
from bot.outcomes import Notice
from bot.parse import Command
from bot.policy import Policy
from bot.revocation import unexpected
from bot.state.sweeps import SweepList

log = logging.getLogger("seatbot.sweep")

CHUNK = 50  # seats per PATCH: Cloudflare's documented batch, one request each
MAX_ROUNDS = 12  # a sweep paused by the rate budget resumes at most this many times
RESUME_JOB = "idle_sweep_resume"
_PAUSE = "rate budget"  # _free's signal: no room in the rate budget, nothing of the chunk was sent
PROGRESS_FROM = 10  # chunks: sweeps at least this long get a progress message half-way
_FATAL = (AuthenticationFailed, PermissionDenied, NotFound, InvalidRequest)
Report = Callable[[SweepProgress], Awaitable[None]]
Announce = Callable[[SweepOutcome], Awaitable[None]]


class SeatUpdater(Protocol):
    async def update_seats(
        self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive"
    ) -> list[Seat]: ...


class Sweeps(Protocol):
    async def put(self, pending_id: str, sweep: SweepList, *, ttl: int) -> None: ...

    async def take(self, pending_id: str) -> SweepList | None: ...

    async def put_rest(self, pending_id: str, sweep: SweepList) -> None: ...

    async def take_rest(self, pending_id: str) -> SweepList | None: ...


class Later(Protocol):
    """The job runner (bot.jobs): run a named job at a time, once per key across processes."""

    async def enqueue_at(self, name: str, *, key: str, at: float, **kwargs: Any) -> bool: ...


class Pendings(Protocol):
    async def put(self, pending: Pending, *, ttl: int) -> None: ...


class Audit(Protocol):
    async def record(self, event: AuditEvent, **fields: Any) -> bool: ...

    async def record_many(self, events: list[tuple[AuditEvent, dict[str, Any]]]) -> bool: ...


class IdleFlow:
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
        later: Later | None = None,
        announce: Announce | None = None,
        retry_seconds: float = 60.0,
    ) -> None:
        self.source = source
        self.seats = seats
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

    # -- the sweep ---------------------------------------------------------------------------

    async def execute(
        self, pending: Pending, confirmer: str, progress: Report | None
    ) -> SweepOutcome | Notice:
        """Run a claimed sweep: the card is already used up, so every path ends in an outcome."""
        sweep = await self.sweeps.take(pending.id)
        if sweep is None:
            text = "This sweep's list has expired; run `/seat idle` again."
            return Notice(text, kind="expired", replace=True)
        try:
            return await self._run(pending, confirmer, sweep, progress)
        except SeatsError as exc:
            await self.audit.record("failed", id=pending.id, user=confirmer, error=exc.describe(), sweep=True)
            text = f"Could not re-check the seats, so nothing was changed: {exc.describe()}."
            return Notice(text, kind="error", replace=True)

    async def resume(self, *, sweep_id: str) -> None:
        """The job runner's continuation of a sweep the rate budget paused; reports when done."""
        sweep = await self.sweeps.take_rest(sweep_id)
        if sweep is None or sweep.pending is None or sweep.confirmer is None:
            return  # another runner has it, or it was finished
        try:
            pending = Pending.loads(sweep.pending)
        except OutdatedRecord as exc:  # never acted on
            log.error("paused sweep %s cannot be resumed by this release: %s", sweep_id, exc)
            return
        try:
            outcome = await self._run(pending, sweep.confirmer, sweep, None)
        except SeatsError as exc:  # re-check failed: the seats were not sent, say so
            why = f"not sent: could not re-check ({exc.describe()})"
            failed = tuple((s, why) for s in sweep.seats)
            ok = await self._record(pending, sweep.confirmer, {}, list(failed))
            outcome = SweepOutcome(pending, sweep.confirmer, self._clock(), (), {}, (), failed, audit_ok=ok)
        outcome = dataclasses.replace(outcome, finished_later=True)
        if self.announce is not None:
            await self.announce(outcome)

    async def _run(
        self, pending: Pending, confirmer: str, sweep: SweepList, progress: Report | None
    ) -> SweepOutcome:
        rule = IdleRule(sweep.days, self._clock(), self.exclude)
        current = await self.source.current([s.seat_uid for s in sweep.seats])
        to_free, skipped = recheck(sweep.seats, current, rule)
        audit_ok = await self._record_skipped(pending, confirmer, skipped)
        freed: list[IdleSeat] = []
        updated: dict[str, str] = {}
        failed: list[tuple[IdleSeat, str]] = []
        deferred = 0
        chunks = [to_free[i : i + CHUNK] for i in range(0, len(to_free), CHUNK)]
        started = time.monotonic()
        await self._progress(progress, SweepProgress(pending, len(to_free), 0))
        for index, chunk in enumerate(chunks):
            if len(chunks) >= PROGRESS_FROM and index == len(chunks) // 2:
                per_chunk = (time.monotonic() - started) / max(1, index)
                eta = per_chunk * (len(chunks) - index)
                await self._progress(progress, SweepProgress(pending, len(to_free), len(freed), eta))
            ok, bad, error = await self._free(chunk)
            if error == _PAUSE:  # the rate budget has no room now: the rest goes to the job runner
                rest = tuple(s for c in chunks[index:] for s in c)
                if await self._defer(pending, confirmer, sweep, rest):
                    deferred = len(rest)
                    break
                error = "the Cloudflare rate budget is used up"
                bad = [(s, f"not sent: {error}") for s in chunk]
            if error is not None:  # nothing after this chunk is sent
                bad += [(s, f"not sent: {error}") for c in chunks[index + 1 :] for s in c]
            freed += ok
            failed += bad
            updated.update((s.seat_uid, at) for s, at in ok.items())
            audit_ok &= await self._record(pending, confirmer, ok, bad)
            await self.source.freed([s.seat_uid for s in ok])
            if error is not None:
                break
        return SweepOutcome(
            pending,
            confirmer,
            rule.now,
            tuple(freed),
            updated,
            tuple(skipped),
            tuple(failed),
            deferred=deferred,
            audit_ok=audit_ok,
        )

    async def _defer(
        self, pending: Pending, confirmer: str, sweep: SweepList, rest: tuple[IdleSeat, ...]
    ) -> bool:
        """Keep the rest for the job runner; False when there is none or this sweep paused too often."""
        if self.later is None or sweep.rounds >= MAX_ROUNDS:
            return False
        record = SweepList(
            sweep.days, rest, pending=pending.dumps(), confirmer=confirmer, rounds=sweep.rounds + 1
        )
        try:
            await self.sweeps.put_rest(pending.id, record)
            at = self._clock() + self.retry_seconds
            await self.later.enqueue_at(
                RESUME_JOB, key=f"{RESUME_JOB}:{pending.id}:{record.rounds}", at=at, sweep_id=pending.id
            )
        except Exception:  # no continuation possible: the caller reports these seats as not sent
            log.exception("could not hand the rest of a sweep to the job runner")
            return False
        await self.audit.record(
            "deferred", id=pending.id, user=confirmer, sweep=len(rest), round=record.rounds, resume_at=at
        )
        return True

    async def _free(
        self, chunk: list[IdleSeat]
    ) -> tuple[dict[IdleSeat, str], list[tuple[IdleSeat, str]], str | None]:
        """PATCH one chunk: (freed → updated_at, failed with why, an error that stops the sweep)."""
        try:
            # the background lane: interactive revokes always keep their reserve of the rate budget
            seats = await self.seats.update_seats(
                [SeatUpdate(seat_uid=s.seat_uid) for s in chunk], lane="bulk"
            )
        except SeatsError as exc:
            if isinstance(exc, RateLimited):
                return {}, [], _PAUSE
            stop = exc.describe() if isinstance(exc, _FATAL) else None
            return {}, [(s, exc.describe()) for s in chunk], stop
        except Exception as exc:  # the outcome of this chunk is unknown: stop and say so
            log.exception("sweep chunk failed unexpectedly")
            why = unexpected(exc, "these seats").message
            return {}, [(s, why) for s in chunk], why
        by_uid = {seat.seat_uid: seat for seat in seats}
        ok: dict[IdleSeat, str] = {}
        bad: list[tuple[IdleSeat, str]] = []
        for s in chunk:
            seat = by_uid.get(s.seat_uid)
            if seat is not None and seat.removed:
                ok[s] = seat.updated_at or ""
            else:
                bad.append((s, "not confirmed by Cloudflare"))
        return ok, bad, None

    @staticmethod
    async def _progress(progress: Report | None, status: SweepProgress) -> None:
        if progress is None or status.total < CHUNK * 2:
            return
        try:
            await progress(status)
        except Exception:  # a progress note is a courtesy; the sweep goes on
            log.warning("could not show sweep progress", exc_info=True)

    async def _record(
        self, pending: Pending, confirmer: str, ok: dict[IdleSeat, str], bad: list[tuple[IdleSeat, str]]
    ) -> bool:
        """One audit event per seat of the chunk, in one round trip."""
        events: list[tuple[AuditEvent, dict[str, Any]]] = [
            (
                "succeeded",
                {**self._fields(pending, confirmer, s), "access_seat": False, "gateway_seat": False}
                | {"updated_at": at},
            )
            for s, at in ok.items()
        ]
        events += [("failed", {**self._fields(pending, confirmer, s), "error": why}) for s, why in bad]
        return await self.audit.record_many(events)

    async def _record_skipped(
        self, pending: Pending, confirmer: str, skipped: list[tuple[IdleSeat, str]]
    ) -> bool:
        return await self.audit.record_many(
            [("skipped", {**self._fields(pending, confirmer, s), "why": why}) for s, why in skipped]
        )

    @staticmethod
    def _fields(pending: Pending, confirmer: str, s: IdleSeat) -> dict[str, Any]:
        return {
            "id": pending.id,
            "user": confirmer,
            "requester": pending.requester,
            "reason": pending.reason,
            "sweep": True,
            "seat_uid": s.seat_uid,
            "email": s.email,
            "last_login": s.last_login or "never",
        }
