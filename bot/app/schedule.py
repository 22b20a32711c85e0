"""Scheduled removals: `--at <when>` cards, the schedule itself, `/seat scheduled`, and firing.

Plain code like the flow (no Slack): confirming a card that has `at` stores an Entry
(bot/state/schedules.py) and a saq job for that time (bot/jobs/runner.py). When the job runs, the
firing lease makes sure one process acts; the seats are looked up again (a seat already gone is
reported, not sent), the rest are PATCHed with retries inside a bounded window, the audit trail
is written and the outcome is announced in the card's channel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.app.flow import UNAVAILABLE, SeatFlow
from bot.app.revocation import seat_results
from bot.app.seat_lookup import SeatLookup
from bot.app.targets import pending_target
from bot.domain.models import AccessUser, Pending, PendingTarget, Seat, new_id
from bot.domain.outcomes import CommandReply, Failure, Notice, SeatResult
from bot.domain.parse import Command
from bot.domain.schedule_outcomes import (
    LATE_AFTER,
    Fired,
    Moved,
    ScheduleConfirmed,
    ScheduleList,
    Unscheduled,
    stamp,
)
from bot.errors import OutdatedRecord, ParseError, SeatsError, StoreUnavailable
from bot.executor import Executor, Plan, run_with_retries, unexpected
from bot.jobs.runner import JobRunner
from bot.redis_watch import Wipe
from bot.state.schedules import Entry, ScheduleStore

log = logging.getLogger("seatbot.schedule")

MAX_AHEAD = 30 * 86400
JOB = "fire_scheduled"
FIRING_LEASE = 30.0  # seconds; renewed every third of it while a firing runs
_RELATIVE = re.compile(r"in\s*([0-9]{1,7})\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WHEN_HELP = (
    "Use an ISO 8601 date-time (`2026-12-04T17:00`, `2026-12-04T17:00:05Z`, `…+01:00`) "
    "or `in 30m` / `in 2h` / `in 3d`."
)

Announcement = Fired | Unscheduled | ScheduleConfirmed
Announce = Callable[[str, Announcement], Awaitable[None]]


def resolve_at(text: str, *, now: float, tz: str) -> float:
    """`--at` text → epoch seconds; a time without an offset is in `tz`."""
    raw = text.strip()
    if m := _RELATIVE.fullmatch(raw.lower()):
        at = now + int(m.group(1)) * _UNIT[m.group(2)[0]]
    else:
        if len(raw) <= 10 or not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d", raw):
            raise ParseError(f"`--at {raw[:40]}`: not a date-time I can read. {WHEN_HELP}")
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ParseError(f"`--at {raw[:40]}`: not a date-time I can read. {WHEN_HELP}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(tz))
        at = moment.timestamp()
    if at <= now:
        raise ParseError(f"`--at {raw[:40]}` is in the past ({stamp(at, tz)}).")
    if at > now + MAX_AHEAD:
        raise ParseError(f"`--at {raw[:40]}` is more than 30 days ahead; schedule at most 30 days out.")
    return at


class Schedules:
    """Attach to a flow with `flow.schedules = Schedules(...)`; `announce` posts in a channel."""

    def __init__(
        self,
        *,
        flow: SeatFlow,
        store: ScheduleStore,
        jobs: JobRunner,
        tz: str = "UTC",
        retry_window: float = 300.0,
        retry_delay: float = 2.0,
        announce: Announce | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        lookup: SeatLookup | None = None,
        lease: float = FIRING_LEASE,
    ) -> None:
        self.flow = flow
        self.lookup = lookup or flow.targets.uids  # the same verified look-up as an interactive revoke
        self.executor: Executor = flow.revocation.executor  # the one way to change Cloudflare
        self.store = store
        self.jobs = jobs
        self.tz = tz
        self.retry_window = retry_window
        self.retry_delay = retry_delay  # the first wait between attempts; it doubles, up to 60 s
        self.announce = announce
        self.wipes: Callable[[], Awaitable[Wipe | None]] | None = None  # a Redis found empty lately
        self._clock = clock
        self._sleep = sleep
        # a firing holds its schedule by a short lease it renews while it runs, so a firing whose
        # process died is taken over within a lease (by the job's retry, or a restarted runner)
        self.lease = lease
        jobs.register(JOB, self._job)
        jobs.on_start.append(self.resume)
        flow.schedules = self

    # -- from the flow ------------------------------------------------------------------------

    async def command(self, *, user: str, channel: str, cmd: Command) -> CommandReply:
        """`/seat scheduled`, or `/seat revoke … --at <when>` (a bad time is refused before any look-up)."""
        if cmd.action == "scheduled":
            return await self.listing()
        try:
            at = self.when(cmd.at or "")
        except ParseError as exc:
            return Notice(str(exc), kind="error")
        return await self.flow.request(user, channel, cmd, at)

    def when(self, text: str) -> float:
        return resolve_at(text, now=self._clock(), tz=self.tz)

    async def duplicates(self, seat_uids: list[str]) -> ScheduleList | None:
        """The existing schedules holding any of these seats, or None."""
        holders = await self.store.holders(seat_uids)
        if not holders:
            return None
        entries = await self.store.get_many(sorted(set(holders.values())))
        return ScheduleList(tuple(entries), duplicate=True, total=len(entries))

    async def schedule(self, pending: Pending, confirmer: str) -> ScheduleConfirmed | ScheduleList | Notice:
        """A confirmed `--at` card: store the schedule and its job (it runs at once if overdue)."""
        assert pending.at is not None
        now = self._clock()
        entry = Entry(id=new_id(), pending=pending, at=pending.at, confirmer=confirmer, scheduled_at=now)
        status, holder = await self.store.add(entry)
        if status == "duplicate":
            existing = await self.store.get_many([holder])
            await self.flow.audit.record("refused", user=confirmer, id=pending.id, why="already scheduled")
            return ScheduleList(tuple(existing), duplicate=True, total=len(existing))
        try:
            await self.jobs.enqueue_at(
                JOB, key=entry.id, at=max(entry.at, now), run_timeout=self._timeout, sid=entry.id
            )
        except Exception:
            log.exception("could not enqueue the scheduled removal")
            await self.store.remove(entry.id, now=now, mode="done")
            return Notice(UNAVAILABLE, kind="unavailable")
        ok = await self.flow.audit.record(
            "scheduled",
            id=entry.id,
            card=pending.id,
            user=confirmer,
            requester=pending.requester,
            channel=pending.channel,
            seats=entry.seat_uids,
            due=entry.at,
            reason=pending.reason,
        )
        return ScheduleConfirmed(entry, audit_ok=ok, late=entry.at <= now)

    async def listing(self, limit: int = 40) -> ScheduleList:
        entries = await self.store.upcoming(limit)
        wipe = await self.wipes() if self.wipes is not None else None  # bot/redis_watch.py
        lost = wipe.text() if wipe is not None else None
        return ScheduleList(tuple(entries), total=await self.store.count(), lost_since=lost)

    async def unschedule(self, entry_id: str, *, user: str) -> Notice | Unscheduled:
        """An admin's cancel button on `/seat scheduled`: drop it, audit it, announce it."""
        try:
            if not (self.flow.policy.configured and await self.flow.auth.is_admin(user)):
                await self.flow.audit.record("refused", user=user, action="unschedule", id=entry_id[:64])
                return Notice("Only seat-bot admins may cancel a scheduled removal.", kind="refused")
            status, entry = await self.store.remove(entry_id, now=self._clock(), mode="cancel")
            if status == "missing" or entry is None:
                return Notice("That scheduled removal already ran or was cancelled.", kind="expired")
            if status == "firing":
                return Notice("That removal is running right now; its outcome will be posted.", kind="info")
            try:
                await self.jobs.cancel(entry.id)
            except Exception:  # the job finds no schedule and does nothing
                log.warning("could not drop the cancelled job", exc_info=True)
            ok = await self.flow.audit.record(
                "unscheduled",
                id=entry.id,
                user=user,
                requester=entry.pending.requester,
                seats=entry.seat_uids,
            )
        except StoreUnavailable:
            return Notice(UNAVAILABLE, kind="unavailable")
        done = Unscheduled(entry, user, audit_ok=ok)
        await self._announce(entry.pending.channel, done)
        return done

    # -- the job ------------------------------------------------------------------------------

    @property
    def _timeout(self) -> int:
        # the retry window, the adapter's own retries and the look-ups: saq retries a job whose
        # process died only after this, so `resume` re-fires overdue ones at start instead
        return int(self.retry_window) + 240

    async def _job(self, *, sid: str) -> None:
        await self.fire(sid)

    async def resume(self) -> None:
        """On start: make sure every stored schedule has its job (enqueue is a no-op when it does),
        and fire again, once its lease runs out, any overdue one: its job may be held by a process
        that died (saq retries that only after the job's timeout)."""
        try:
            now = self._clock()
            for entry in await self.store.upcoming(10_000):
                await self.jobs.enqueue_at(
                    JOB, key=entry.id, at=entry.at, run_timeout=self._timeout, sid=entry.id
                )
                if entry.at <= now:
                    at = max(now, entry.firing_until or 0.0)
                    key = f"{entry.id}:again:{math.ceil(at)}"
                    await self.jobs.enqueue_at(JOB, key=key, at=at, run_timeout=self._timeout, sid=entry.id)
        except Exception:
            log.warning("could not check the scheduled removals' jobs", exc_info=True)

    async def fire(self, entry_id: str) -> Fired | None:
        """Run one scheduled removal if no other run holds it; None when there was nothing to do."""
        token = new_id()
        status, entry = await self.store.claim_firing(
            entry_id, now=self._clock(), lease=self.lease, token=token
        )
        if status == "outdated":  # made by a newer release: never acted on here; saq retries it later
            await self.flow.audit.record("outdated", id=entry_id, action="scheduled removal")
            raise OutdatedRecord(f"scheduled removal {entry_id} was made by another release; not run here")
        if status != "claimed" or entry is None:
            log.info("scheduled removal %s: %s, nothing to do", entry_id, status)
            return None
        keep = asyncio.create_task(self._keep_lease(entry.id, token))
        try:
            fired = await self._run(entry)
        finally:
            keep.cancel()
        await self.store.remove(entry.id, now=self._clock(), mode="done")
        await self._announce(entry.pending.channel, fired)
        return fired

    async def _keep_lease(self, entry_id: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await self.store.renew(entry_id, now=self._clock(), lease=self.lease, token=token):
                    log.error("scheduled removal %s: lost its firing lease", entry_id)
                    return
            except StoreUnavailable:
                log.warning("scheduled removal %s: could not renew its firing lease", entry_id)

    async def _run(self, entry: Entry) -> Fired:
        """Look the seats up through the verified path (bot/app/seat_lookup.py, with the card's emails),
        free the ones still held through the executor, and retry (tenacity) what failed or could not
        be looked up, within the retry window."""
        pending, flow = entry.pending, self.flow
        fired_at = self._clock()
        f = _Firing(remaining=list(pending.targets), sent_at=entry.sent_at)

        async def attempt(number: int) -> bool:
            await self._attempt(entry, f)
            return not f.remaining

        _, attempts = await run_with_retries(
            attempt,
            done=bool,
            window=self.retry_window,
            first_delay=self.retry_delay,
            sleep=self._sleep,
            what=f"scheduled removal {entry.id}",
        )
        results, earlier, gone, moved, vanished = f.results, f.earlier, f.gone, f.moved, f.vanished
        remaining, error, sent_at = f.remaining, f.error, f.sent_at
        late = {"late_by": round(fired_at - entry.at, 1)} if fired_at - entry.at > LATE_AFTER else {}
        ok = await flow.audit.record_many(
            [("already_removed", {"id": entry.id, "seat_uid": t.seat_uid, "email": t.email}) for t in gone]
            + [("skipped", _moved_fields(entry, m)) for m in moved]
            + [
                ("skipped", _fields(entry, t, "no Zero Trust user holds this seat any more"))
                for t in vanished
            ]
        )
        ok &= await flow.revocation.record_results(pending, entry.confirmer, results, **late)
        # a firing after a crash: the change Cloudflare confirms now was made by the first firing
        ok &= await flow.revocation.record_results(
            pending, entry.confirmer, earlier, sent_at=sent_at, confirmed_at=self._clock(), **late
        )
        failure = None
        if error is not None and remaining:
            ok &= await flow.audit.record(
                "failed",
                id=entry.id,
                user=entry.confirmer,
                requester=pending.requester,
                error=error.describe(),
                status=error.status,
                cf_ray=error.cf_ray,
                attempts=attempts,
            )
            retry = await flow.revocation.fresh_try(pending, remaining)
            failure = Failure(pending, entry.confirmer, error.describe(), retry, audit_ok=ok)
        offer = await flow.revocation.fresh_try(
            pending, [pending_target(m.target.label, u) for m in moved for u in m.now if not u.has_no_seat]
        )
        return Fired(
            entry,
            tuple(results),
            tuple(gone),
            failure,
            attempts,
            audit_ok=ok,
            earlier=tuple(earlier),
            moved=tuple(moved),
            vanished=tuple(vanished),
            offer=offer,
            fired_at=fired_at,
            sent_at=sent_at,
        )

    async def _attempt(self, entry: Entry, f: _Firing) -> None:
        """One look-up of what is left, and one PATCH of the seats still held."""
        emails = {t.seat_uid: t.email for t in entry.pending.targets if t.email}
        try:
            answers = await self.lookup.by_uids([t.seat_uid for t in f.remaining], emails=emails)
        except Exception as exc:  # the look-up itself broke: nothing is known, nothing sent
            f.error = exc if isinstance(exc, SeatsError) else _unexpected(exc)
            return
        to_send, unresolved = [], []
        for target in f.remaining:
            user = answers.found.get(target.seat_uid)
            others = _other_seats(target, answers.by_email)
            if user is not None and not user.has_no_seat:
                to_send.append(target)
            elif user is not None:
                if f.sent_at is not None and _changed_since(user, f.sent_at):
                    f.earlier.append(SeatResult(target, _as_seat(user)))
                else:
                    f.gone.append(target)
            elif others:  # the person is in Cloudflare with another seat: never this one's
                f.moved.append(Moved(target, tuple(others)))
            elif answers.missing.get(target.seat_uid) == "nobody":
                f.vanished.append(target)
            else:  # not seen, not known gone: a look-up that could not finish
                unresolved.append(target)
        f.error = None
        if unresolved:
            why = "; ".join(answers.problems.get(t.seat_uid, t.seat_uid) for t in unresolved)
            f.error = SeatsError(f"not sent: the seat could not be looked up ({why})")
        if to_send:
            if f.sent_at is None:
                f.sent_at = self._clock()
                await self.store.mark_sent(entry.id, now=f.sent_at)
            applied = await self.executor.run(Plan.free(t.seat_uid for t in to_send), lane="interactive")
            if applied.error is None:
                f.results += seat_results(to_send, list(applied.seats.values()))
            else:  # what Cloudflare confirmed is done; the rest is tried again
                f.error = applied.error
                f.results += [
                    SeatResult(t, applied.seats[t.seat_uid]) for t in to_send if applied.freed(t.seat_uid)
                ]
                unresolved += [t for t in to_send if not applied.freed(t.seat_uid)]
        f.remaining = unresolved

    async def _announce(self, channel: str, what: Announcement) -> None:
        if self.announce is None:
            return
        try:
            await self.announce(channel, what)
        except Exception:
            log.exception("could not announce in %s", channel)


@dataclass
class _Firing:
    """What one firing has found so far, across its attempts."""

    remaining: list[PendingTarget]
    sent_at: float | None
    error: SeatsError | None = None
    results: list[SeatResult] = field(default_factory=list)
    earlier: list[SeatResult] = field(default_factory=list)
    gone: list[PendingTarget] = field(default_factory=list)
    moved: list[Moved] = field(default_factory=list)
    vanished: list[PendingTarget] = field(default_factory=list)


def _other_seats(target: PendingTarget, by_email: dict[str, list[AccessUser]]) -> list[AccessUser]:
    """The seats Cloudflare lists for the target's email now, other than the scheduled one."""
    users = by_email.get((target.email or "").casefold(), [])
    return [u for u in users if u.seat_uid and u.seat_uid != target.seat_uid]


def _as_seat(user: AccessUser) -> Seat:
    return Seat(
        seat_uid=str(user.seat_uid),
        access_seat=user.access_seat,
        gateway_seat=user.gateway_seat,
        updated_at=user.updated_at,
        cf_ray=user.cf_ray,
    )


def _changed_since(user: AccessUser, moment: float) -> bool:
    """The user record changed at or after `moment` (a few seconds of clock skew allowed); a record
    without a time counts as changed: the PATCH was sent, and Cloudflare shows the seat removed."""
    try:
        updated = datetime.fromisoformat(str(user.updated_at).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True
    return updated >= moment - 5


def _fields(entry: Entry, target: PendingTarget, why: str) -> dict[str, Any]:
    return {
        "id": entry.id,
        "user": entry.confirmer,
        "seat_uid": target.seat_uid,
        "email": target.email,
        "why": why,
    }


def _moved_fields(entry: Entry, moved: Moved) -> dict[str, Any]:
    now = ", ".join(str(u.seat_uid) for u in moved.now)
    return _fields(entry, moved.target, "the person now holds another seat; not removed") | {"now": now}


def _unexpected(exc: Exception) -> SeatsError:
    log.error("scheduled removal failed unexpectedly", exc_info=exc)
    return unexpected(exc)
