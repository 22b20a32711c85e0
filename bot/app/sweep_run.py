"""Running a confirmed idle sweep to its end, whatever stops it (the sweep half of `IdleFlow`).

The click starts a run in Redis (bot/state/sweeps.py) and drives it chunk by chunk: before a chunk
its index is written as in flight, after it the seats' audit events and results, then the next
index. Every runner holds a short lease it renews; a job at the lease's end (or at a budget pause's
end) lets any process take over a sweep nobody drives: the chunk in flight is sent again (a seat set
free twice stays free, and its audit events are written this time), the rest is checked again, and
the run goes on. Only the runner that marks it done reports it, once, with every seat it decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from bot.app.idle_source import UserSource
from bot.cloudflare.budget import Lane
from bot.domain.idle import (
    Exclusions,
    IdleRule,
    IdleSeat,
    SweepOutcome,
    SweepProgress,
    recheck,
)
from bot.domain.models import AuditEvent, Pending, Seat, SeatUpdate, new_id
from bot.domain.outcomes import Notice
from bot.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OutdatedRecord,
    PermissionDenied,
    RateLimited,
    SeatsError,
    StoreUnavailable,
)
from bot.executor import Executor, Plan, Unexpected
from bot.state.sweeps import Run, SweepList

log = logging.getLogger("seatbot.sweep")

CHUNK = 50  # seats per PATCH: Cloudflare's documented batch, one request each
MAX_ROUNDS = 12  # a sweep paused by the rate budget resumes at most this many times
RESUME_JOB = "idle_sweep_resume"
_PAUSE = "rate budget"  # _free's signal: no room in the rate budget, nothing of the chunk was sent
PROGRESS_FROM = 10  # chunks: sweeps at least this long get a progress message half-way
_FATAL = (AuthenticationFailed, PermissionDenied, NotFound, InvalidRequest)
LEASE = 30.0  # seconds a runner holds a sweep between renewals (every third of it)
EXPIRED_SWEEP = "This sweep's list has expired; run `/seat idle` again."
Report = Callable[[SweepProgress], Awaitable[None]]
Announce = Callable[[SweepOutcome], Awaitable[None]]


class SeatUpdater(Protocol):
    async def update_seats(
        self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive"
    ) -> list[Seat]: ...


class Sweeps(Protocol):
    async def put(self, pending_id: str, sweep: SweepList, *, ttl: int) -> None: ...

    async def get(self, pending_id: str) -> SweepList | None: ...

    async def start(
        self, pending_id: str, plan: SweepList, rows: list[str], *, token: str, until: float
    ) -> bool: ...

    async def acquire(
        self, pending_id: str, *, token: str, now: float, until: float
    ) -> tuple[str, float]: ...

    async def write(
        self,
        pending_id: str,
        *,
        token: str,
        fields: Mapping[str, str | int | float],
        rows: Sequence[str] = (),
    ) -> bool: ...

    async def run(self, pending_id: str) -> Run | None: ...

    async def rows(self, pending_id: str) -> list[str]: ...


class Later(Protocol):
    """The job runner (bot.jobs.runner): run a named job at a time, once per key across processes."""

    async def enqueue_at(self, name: str, *, key: str, at: float, **kwargs: Any) -> bool: ...


class Continuer(Later, Protocol):
    async def alive(self) -> bool:
        """Whether any job runner is alive to run what is enqueued (True when that cannot be told)."""
        ...


class Audit(Protocol):
    async def record(self, event: AuditEvent, **fields: Any) -> bool: ...

    async def record_many(self, events: list[tuple[AuditEvent, dict[str, Any]]]) -> bool: ...


class Sweeping:
    """The sweep half of IdleFlow (bot/app/sweep.py), which sets these."""

    source: UserSource
    seats: SeatUpdater
    executor: Executor  # every change in Cloudflare goes through it (bot/executor.py)
    sweeps: Sweeps
    audit: Audit
    exclude: Exclusions
    _clock: Callable[[], float]
    later: Continuer | None
    announce: Announce | None
    retry_seconds: float
    lease: float

    # -- the sweep ---------------------------------------------------------------------------

    async def execute(
        self, pending: Pending, confirmer: str, progress: Report | None
    ) -> SweepOutcome | Notice:
        """Run a claimed sweep: the card is already used up, so every path ends in an outcome."""
        run = await self.sweeps.run(pending.id)
        if run is not None:  # started already (a click after the claim's lease): never twice
            return self.under_way(pending, run)
        sweep = await self.sweeps.get(pending.id)
        if sweep is None:
            text = "This sweep's list has expired; run `/seat idle` again."
            return Notice(text, kind="expired", replace=True)
        try:
            to_free, skipped = await self._recheck(sweep.days, sweep.seats)
        except SeatsError as exc:
            await self.audit.record("failed", id=pending.id, user=confirmer, error=exc.describe(), sweep=True)
            text = f"Could not re-check the seats, so nothing was changed: {exc.describe()}."
            return Notice(text, kind="error", replace=True)
        audit_ok = await self._record_skipped(pending, confirmer, skipped)
        token, until = new_id(), self._clock() + self.lease
        plan = SweepList(sweep.days, tuple(to_free), pending=pending.dumps(), confirmer=confirmer)
        rows = [_row("skipped", s, why) for s, why in skipped]
        if not await self.sweeps.start(pending.id, plan, rows, token=token, until=until):
            run = await self.sweeps.run(pending.id)
            return (
                self.under_way(pending, run) if run else Notice(EXPIRED_SWEEP, kind="expired", replace=True)
            )
        await self._watch(pending.id, until)  # if this process dies, a job runner takes the sweep over
        outcome = await self._drive(pending.id, token, progress, first=True)
        if outcome is None:  # another runner took it over (this one stalled past its lease)
            run = await self.sweeps.run(pending.id)
            return (
                self.under_way(pending, run) if run else Notice(EXPIRED_SWEEP, kind="expired", replace=True)
            )
        return dataclasses.replace(outcome, audit_ok=outcome.audit_ok and audit_ok)

    def under_way(self, pending: Pending, run: Run) -> Notice:
        """What a click on a sweep that is already running (or done) hears: no promise to click again."""
        if run.state == "done":
            return Notice("This sweep has finished; its outcome was posted in the channel.", kind="info")
        left = len(run.plan.seats) - run.next * CHUNK
        text = (
            f"This sweep is under way: {run.done:,} of {pending.sweep:,} seats done, {max(0, left):,} to go. "
            "It continues on its own, even if a bot process stops, and its outcome will be posted in "
            "this channel. Nothing new was done."
        )
        return Notice(text, kind="info")

    async def running(self, pending_id: str) -> Run | None:
        return await self.sweeps.run(pending_id)

    async def resume(self, *, sweep_id: str) -> None:
        """The job runner's turn: continue a sweep that the rate budget paused or whose runner died
        (its lease ran out); a live runner's sweep is looked at again when its lease ends."""
        token, now = new_id(), self._clock()
        status, held = await self.sweeps.acquire(sweep_id, token=token, now=now, until=now + self.lease)
        if status == "busy":
            await self._watch(sweep_id, held)
        if status != "acquired":
            return
        await self._watch(sweep_id, now + self.lease)
        try:
            outcome = await self._drive(sweep_id, token, None, first=False)
        except OutdatedRecord as exc:  # never acted on
            log.error("sweep %s cannot be resumed by this release: %s", sweep_id, exc)
            return
        if outcome is not None and outcome.deferred == 0 and self.announce is not None:
            await self.announce(dataclasses.replace(outcome, finished_later=True))

    async def _watch(self, sweep_id: str, at: float) -> None:
        """A job at `at` (a lease's end, a pause's end) that resumes the sweep if nobody drives it."""
        if self.later is None:
            return
        try:
            key = f"{RESUME_JOB}:{sweep_id}:{math.ceil(at)}"
            await self.later.enqueue_at(RESUME_JOB, key=key, at=at + 0.5, sweep_id=sweep_id)
        except Exception:
            log.exception("could not set the job that resumes sweep %s", sweep_id)

    async def _keep(self, sweep_id: str, token: str) -> None:
        """Renew the lease while this runner drives the sweep (a chunk may wait minutes on Cloudflare)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await self.sweeps.write(
                    sweep_id, token=token, fields={"until": self._clock() + self.lease}
                ):
                    return
            except StoreUnavailable:
                log.warning("could not renew the lease of sweep %s", sweep_id)

    async def _drive(
        self, sweep_id: str, token: str, progress: Report | None, *, first: bool
    ) -> SweepOutcome | None:
        """Send the sweep's chunks from where it is; None when this runner lost it to another."""
        keep = asyncio.create_task(self._keep(sweep_id, token))
        try:
            return await self._chunks(sweep_id, token, progress, first=first)
        finally:
            keep.cancel()

    async def _chunks(
        self, sweep_id: str, token: str, progress: Report | None, *, first: bool
    ) -> SweepOutcome | None:
        run = await self.sweeps.run(sweep_id)
        if run is None or run.plan.pending is None or run.plan.confirmer is None:
            return None
        pending, confirmer = Pending.loads(run.plan.pending), run.plan.confirmer
        seats, start, resent = list(run.plan.seats), run.next, 0
        audit_ok = True
        if not first:  # a resume: the chunk in flight again, then the rest re-checked
            flight = seats[run.inflight * CHUNK : (run.inflight + 1) * CHUNK] if run.inflight >= 0 else []
            rest = seats[(max(run.next, run.inflight + 1)) * CHUNK :]
            try:
                rest, skipped = await self._recheck(run.plan.days, rest)
            except SeatsError as exc:
                why = f"not sent: could not re-check ({exc.describe()})"
                rest, skipped = [], []
                audit_ok &= await self._record(
                    pending, confirmer, {}, [(s, why) for s in seats[start * CHUNK :]]
                )
                await self.sweeps.write(
                    sweep_id,
                    token=token,
                    fields={},
                    rows=[_row("failed", s, why) for s in seats[start * CHUNK :]],
                )
                flight = []
            audit_ok &= await self._record_skipped(pending, confirmer, skipped)
            seats, start, resent = flight + rest, 0, len(flight)
            plan = dataclasses.replace(run.plan, seats=tuple(seats))
            rows = [_row("skipped", s, why) for s, why in skipped]
            fields: dict[str, str | int | float] = {"plan": plan.dumps(), "next": 0, "inflight": -1}
            if not await self.sweeps.write(sweep_id, token=token, fields=fields, rows=rows):
                return None
        chunks = [seats[i : i + CHUNK] for i in range(0, len(seats), CHUNK)]
        began, sent = time.monotonic(), 0
        if first:
            await self._progress(progress, SweepProgress(pending, len(seats), 0))
        for index in range(start, len(chunks)):
            chunk = chunks[index]
            if first and len(chunks) >= PROGRESS_FROM and index == len(chunks) // 2:
                eta = (time.monotonic() - began) / max(1, index) * (len(chunks) - index)
                await self._progress(progress, SweepProgress(pending, len(seats), sent, eta))
            until = self._clock() + self.lease
            if not await self.sweeps.write(sweep_id, token=token, fields={"inflight": index, "until": until}):
                return None
            ok, bad, error = await self._free(chunk)
            if error == _PAUSE:  # the rate budget has no room now: the rest goes to the job runner
                if await self._pause(sweep_id, token, pending, confirmer, run.rounds, index, len(seats)):
                    return await self._outcome(
                        sweep_id, pending, confirmer, audit_ok, deferred=len(seats) - index * CHUNK
                    )
                error = "the Cloudflare rate budget is used up"
                if self.later is not None and not await self.later.alive():
                    error += " and no job runner is alive to continue the sweep later"
                bad = [(s, f"not sent: {error}") for s in chunk]
            if error is not None:  # nothing after this chunk is sent
                bad += [(s, f"not sent: {error}") for c in chunks[index + 1 :] for s in c]
            note = "sent again after its runner stopped" if index * CHUNK < resent else None
            audit_ok &= await self._record(pending, confirmer, ok, bad, note=note)
            rows = [_row("freed", s, at) for s, at in ok.items()] + [_row("failed", s, why) for s, why in bad]
            step = {"inflight": -1, "next": index + 1} | ({} if audit_ok else {"audit_bad": 1})
            if not await self.sweeps.write(sweep_id, token=token, fields=step, rows=rows):
                return None
            await self.source.freed([s.seat_uid for s in ok])
            sent += len(ok)
            if error is not None:
                break
        if not await self.sweeps.write(sweep_id, token=token, fields={"state": "done", "until": 0}):
            return None  # another runner finished it and reports it
        return await self._outcome(sweep_id, pending, confirmer, audit_ok)

    async def _recheck(
        self, days: int, seats: Sequence[IdleSeat]
    ) -> tuple[list[IdleSeat], list[tuple[IdleSeat, str]]]:
        if not seats:
            return [], []
        rule = IdleRule(days, self._clock(), self.exclude)
        current = await self.source.current([s.seat_uid for s in seats])
        return recheck(seats, current, rule)

    async def _pause(
        self, sweep_id: str, token: str, pending: Pending, confirmer: str, rounds: int, index: int, total: int
    ) -> bool:
        """Hand the rest to the job runner; False when there is none or this sweep paused too often."""
        if self.later is None or rounds >= MAX_ROUNDS:
            return False
        if not await self.later.alive():  # nobody would continue it: never promise that
            log.error("a sweep has no room in the rate budget and no job runner is alive to continue it")
            return False
        at = self._clock() + self.retry_seconds
        fields: dict[str, str | int | float] = {
            "inflight": -1,
            "next": index,
            "state": "paused",
            "until": at,
            "rounds": rounds + 1,
        }
        try:
            if not await self.sweeps.write(sweep_id, token=token, fields=fields):
                return False
            await self.later.enqueue_at(
                RESUME_JOB, key=f"{RESUME_JOB}:{sweep_id}:{math.ceil(at)}", at=at, sweep_id=sweep_id
            )
        except Exception:  # no continuation possible: the caller reports these seats as not sent
            log.exception("could not hand the rest of a sweep to the job runner")
            return False
        rest = total - index * CHUNK
        await self.audit.record(
            "deferred", id=pending.id, user=confirmer, sweep=rest, round=rounds + 1, resume_at=at
        )
        return True

    async def _outcome(
        self, sweep_id: str, pending: Pending, confirmer: str, audit_ok: bool, *, deferred: int = 0
    ) -> SweepOutcome:
        """The whole sweep so far, from the rows every runner recorded."""
        freed: list[IdleSeat] = []
        updated: dict[str, str] = {}
        skipped: list[tuple[IdleSeat, str]] = []
        failed: list[tuple[IdleSeat, str]] = []
        for raw in await self.sweeps.rows(sweep_id):
            kind, row, info = json.loads(raw)
            seat = IdleSeat.from_row(row)
            if kind == "freed":
                freed.append(seat)
                updated[seat.seat_uid] = info
            elif kind == "skipped":
                skipped.append((seat, info))
            else:
                failed.append((seat, info))
        run = await self.sweeps.run(sweep_id)
        return SweepOutcome(
            pending,
            confirmer,
            self._clock(),
            tuple(freed),
            updated,
            tuple(skipped),
            tuple(failed),
            deferred=deferred,
            audit_ok=audit_ok and (run is None or run.audit_ok),
        )

    async def _free(
        self, chunk: list[IdleSeat]
    ) -> tuple[dict[IdleSeat, str], list[tuple[IdleSeat, str]], str | None]:
        """PATCH one chunk: (freed → updated_at, failed with why, an error that stops the sweep)."""
        # the background lane: interactive revokes always keep their reserve of the rate budget
        applied = await self.executor.run(Plan.free(s.seat_uid for s in chunk), lane="bulk")
        exc = applied.error
        if isinstance(exc, RateLimited):
            return {}, [], _PAUSE
        if exc is not None:  # one chunk is one request: nothing of it is confirmed
            stop = exc.describe() if isinstance(exc, _FATAL | Unexpected) else None
            return {}, [(s, exc.describe()) for s in chunk], stop
        seats = list(applied.seats.values())
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
        self,
        pending: Pending,
        confirmer: str,
        ok: dict[IdleSeat, str],
        bad: list[tuple[IdleSeat, str]],
        note: str | None = None,
    ) -> bool:
        """One audit event per seat of the chunk, in one round trip."""
        extra = {"note": note} if note else {}
        events: list[tuple[AuditEvent, dict[str, Any]]] = [
            (
                "succeeded",
                {**self._fields(pending, confirmer, s), "access_seat": False, "gateway_seat": False}
                | {"updated_at": at}
                | extra,
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


def _row(kind: str, seat: IdleSeat, info: str) -> str:
    """One decided seat, as the sweep's record keeps it: freed (with updated_at), skipped or failed (why)."""
    return json.dumps([kind, seat.row(), info], separators=(",", ":"))
