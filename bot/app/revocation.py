"""A confirmed revoke: run through the executor (bot/executor.py), then what Cloudflare said recorded.

A click (bot/app/flow.py, and with it a Workflow Builder step's card) runs `execute`; a scheduled
removal (bot/app/schedule.py) looks its seats up again, runs the same executor and records here too: one
audit event per seat, the idle facts told which seats were freed, and, when some seats were not
removed, a fresh confirmation card for exactly those. Sweeps record per chunk (bot/app/sweep_run.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from bot.app.seat_lookup import UidAnswers
from bot.cloudflare.budget import Lane
from bot.domain.models import AuditEvent, Pending, PendingTarget, Seat, new_id
from bot.domain.outcomes import Failure, Outcome, SeatResult
from bot.domain.policy import Policy
from bot.errors import SeatsError, StoreUnavailable
from bot.executor import Executor, Plan, SeatWriter

log = logging.getLogger(__name__)

Freed = Callable[[Sequence[str]], Awaitable[None]]
LOOKUP_SECONDS = 10.0  # a fresh try's look-up: past this its card says "?" rather than wait


class PendingPut(Protocol):
    async def put(self, pending: Pending, *, ttl: int) -> None: ...


class CurrentSeats(Protocol):
    """The verified seat-UID look-up (bot.app.seat_lookup.SeatLookup)."""

    async def by_uids(self, uids: Sequence[str]) -> UidAnswers: ...


class Recorder(Protocol):
    async def record(self, event: AuditEvent, **fields: Any) -> bool: ...

    async def record_many(self, events: list[tuple[AuditEvent, dict[str, Any]]]) -> bool: ...


def seat_results(targets: Sequence[PendingTarget], seats: Sequence[Seat]) -> tuple[SeatResult, ...]:
    """Each target with the seat Cloudflare returned for it (None: not in the answer)."""
    by_uid = {seat.seat_uid: seat for seat in seats}
    return tuple(SeatResult(t, by_uid.get(t.seat_uid)) for t in targets)


def seat_uids(pending: Pending) -> list[str]:
    """The seat UIDs a pending revoke is about: every audit event about it names them."""
    return [t.seat_uid for t in pending.targets]


class Revocation:
    def __init__(
        self,
        *,
        seats: SeatWriter,
        store: PendingPut,
        audit: Recorder,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        freed: Freed | None = None,
        executor: Executor | None = None,
        current: CurrentSeats | None = None,
    ) -> None:
        self.executor = executor or Executor(seats)
        self.store = store
        self.audit = audit
        self.policy = policy
        self.clock = clock
        self.freed = freed  # the directory's idle facts learn it before the next sync
        self.current = current  # a fresh try's card shows the seats as they are now

    async def execute(
        self, pending: Pending, confirmer: str, *, lane: Lane = "interactive"
    ) -> Outcome | Failure:
        """PATCH the card's seats once; record each seat's outcome; offer a fresh try for the rest."""
        applied = await self.executor.run(Plan.free(seat_uids(pending)), lane=lane)
        results = seat_results(pending.targets, list(applied.seats.values()))
        error = applied.error
        if error is None:
            ok = await self.record_results(pending, confirmer, results)
            return Outcome(pending, confirmer, results, audit_ok=ok)
        # Earlier chunks may have gone through: report exactly those, retry only the rest.
        done = tuple(r for r in results if r.confirmed)
        ok = await self.record_results(pending, confirmer, done)
        ok &= await self.audit.record(
            "failed",
            id=pending.id,
            user=confirmer,
            requester=pending.requester,
            seats=seat_uids(pending),
            error=error.describe(),
            status=error.status,
            cf_ray=error.cf_ray,
            attempts=error.attempts,
        )
        done_uids = {r.target.seat_uid for r in done}
        rest = [t for t in pending.targets if t.seat_uid not in done_uids]
        retry = await self.fresh_try(pending, rest)
        return Failure(pending, confirmer, error.describe(), retry, audit_ok=ok, done=done)

    async def record_results(
        self, pending: Pending, confirmer: str, results: Sequence[SeatResult], **extra: Any
    ) -> bool:
        """One audit event per seat (in one round trip), with `extra` fields on each; False when the
        audit trail missed it."""
        if not results:
            return True
        if self.freed is not None:
            await self.freed([r.target.seat_uid for r in results if r.confirmed])
        events: list[tuple[AuditEvent, dict[str, Any]]] = []
        for result in results:
            seat = result.seat
            events.append(
                (
                    "succeeded" if result.confirmed else "failed",
                    {
                        "id": pending.id,
                        "user": confirmer,
                        "requester": pending.requester,
                        "approved_by": pending.approved_by,
                        "named_requester": pending.named_requester,
                        "reason": pending.reason,
                        "seat_uid": result.target.seat_uid,
                        "email": result.target.email,
                        "access_seat": seat.access_seat if seat else None,
                        "gateway_seat": seat.gateway_seat if seat else None,
                        "updated_at": seat.updated_at if seat else None,
                        "cf_ray": seat.cf_ray if seat else None,
                        "error": None if result.confirmed else "not confirmed by Cloudflare",
                    }
                    | extra,
                )
            )
        return await self.audit.record_many(events)

    async def as_now(self, targets: list[PendingTarget]) -> list[PendingTarget]:
        """The targets with their seats as Cloudflare shows them now: a PATCH whose answer was lost may
        have been applied, so a fresh card never repeats the state read before it ("?" when the
        look-up cannot say)."""
        if self.current is None:
            return targets
        found = {}
        try:
            async with asyncio.timeout(LOOKUP_SECONDS):
                found = (await self.current.by_uids([t.seat_uid for t in targets])).found
        except (SeatsError, StoreUnavailable, TimeoutError) as exc:
            log.warning("the fresh try's look-up failed (%s): its card shows the seats as unknown", exc)
        fresh = []
        for target in targets:
            user = found.get(target.seat_uid)
            access, gateway = (user.access_seat, user.gateway_seat) if user is not None else (None, None)
            fresh.append(dataclasses.replace(target, access_seat=access, gateway_seat=gateway))
        return fresh

    async def fresh_try(self, failed: Pending, targets: list[PendingTarget]) -> Pending | None:
        """A new confirmation card for the seats a failed revoke did not remove (None: nothing left)."""
        if not targets:
            return None
        targets = await self.as_now(targets)
        now = self.clock()
        retry = Pending(
            id=new_id(),
            requester=failed.requester,
            named_requester=failed.named_requester,  # a fresh try needs its two admins again
            channel=failed.channel,
            targets=targets,
            reason=failed.reason,
            created_at=now,
            expires_at=now + self.policy.confirm_ttl,
            two_person=failed.two_person or self.policy.two_person,
            attempt=failed.attempt + 1,
        )
        try:
            await self.store.put(retry, ttl=self.policy.confirm_ttl)
        except StoreUnavailable:
            return None
        await self.audit.record(
            "requested",
            id=retry.id,
            retry_of=failed.id,
            user=failed.requester,
            channel=failed.channel,
            seats=[t.seat_uid for t in targets],
            reason=failed.reason,
        )
        return retry
