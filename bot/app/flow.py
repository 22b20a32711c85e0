"""The decisions, in plain async code that knows nothing of Slack.

command: parse → authorise → resolve targets → pend → card
click:   authorise → claim (atomic, once) → call Cloudflare → record → outcome
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from bot.app.directory_sync import DirectorySync, sync_command
from bot.app.revocation import Revocation, seat_uids
from bot.app.seat_lookup import Cloudflare, SeatLookup
from bot.app.sweep import IdleFlow
from bot.app.targets import TargetResolver, pending_target
from bot.cloudflare.budget import Lane as CloudflareLane
from bot.domain.models import AccessUser, AuditEvent, Claim, Pending, PendingTarget, Seat, SeatUpdate, new_id
from bot.domain.outcomes import (
    Approved,
    AuditReport,
    Cancelled,
    Card,
    ClickReply,
    CommandReply,
    Contacts,
    Help,
    Notice,
    NoticeKind,
    StatusReport,
)
from bot.domain.parse import Command, parse
from bot.domain.policy import Authorizer, Directory
from bot.errors import ParseError, StoreUnavailable

if TYPE_CHECKING:
    from bot.app.schedule import Schedules

log = logging.getLogger("seatbot.flow")

UNAVAILABLE = "The bot's store is temporarily unavailable, so nothing was changed. Try again in a minute."
EXPIRED = "This confirmation has expired or was already handled."
BUSY = (
    "Your earlier click on this button is still being handled, or was cut off when the bot's store "
    "stalled. Nothing new was done. If no result appears, click again in {s} seconds and the revoke "
    "resumes (repeating it is safe)."
)
OUTDATED = (
    "This card was made by another version of the bot and can no longer be used. Run the command again."
)
NO_SEAT = "has no Zero Trust seat (access ✗ / gateway ✗ already); nothing to revoke."
Progress = Callable[[Any], Awaitable[None]]  # a Pending (revoke) or a SweepProgress (idle sweep)
Lane = Callable[[], AbstractAsyncContextManager[None]]


class SeatsAPI(Protocol):
    """The part of the Cloudflare adapter the flow uses."""

    async def find_users(self, *, email: str) -> list[AccessUser]: ...

    async def find_users_by_seat_uids(self, seat_uids: Collection[str]) -> dict[str, AccessUser]: ...

    async def update_seats(
        self, updates: Sequence[SeatUpdate], *, lane: CloudflareLane = "interactive"
    ) -> list[Seat]: ...


class PendingStore(Protocol):
    """Where confirmations wait for their click (Redis: `bot.state.pending`)."""

    async def put(self, pending: Pending, *, ttl: int) -> None: ...

    async def claim(
        self,
        pending_id: str,
        *,
        clicker: str,
        action: Literal["confirm", "cancel"],
        clicker_is_admin: bool,
        two_person: bool,
    ) -> Claim: ...

    async def finish(self, pending_id: str) -> None: ...


class AuditTrail(Protocol):
    """Where every event is recorded (Redis stream + log: `bot.state.audit`)."""

    async def record(self, event: AuditEvent, **fields: Any) -> bool: ...

    async def record_many(self, events: list[tuple[AuditEvent, dict[str, Any]]]) -> bool: ...

    async def recent(self, count: int, *, noise: bool = False) -> list[dict[str, Any]]: ...

    async def refusals(self) -> int: ...


class SeatFlow:
    def __init__(
        self,
        *,
        seats: SeatsAPI,
        store: PendingStore,
        audit: AuditTrail,
        directory: Directory,
        authorizer: Authorizer,
        lookup_concurrency: int = 8,
        clock: Callable[[], float] = time.time,
        idle: IdleFlow | None = None,
        seat_lookup: SeatLookup | None = None,
        directory_sync: DirectorySync | None = None,
        guide_url: str | None = None,
    ) -> None:
        self.seats = seats
        self.store = store
        self.audit = audit
        self.directory = directory
        self.auth = authorizer
        self.policy = authorizer.policy
        self.clock = clock
        self.idle = idle
        # seat UID targets: through the seat directory when there is one (bot/app/seat_lookup.py)
        uids = seat_lookup or SeatLookup(seats=cast(Cloudflare, seats), concurrency=lookup_concurrency)
        self.targets = TargetResolver(
            seats=seats, directory=directory, uids=uids, concurrency=lookup_concurrency
        )
        self.revocation = Revocation(
            seats=seats,
            store=store,
            audit=audit,
            policy=self.policy,
            clock=clock,
            freed=self._freed,
            current=uids,
        )
        self.directory_sync = directory_sync
        self.guide_url = guide_url  # where `/seat help` points for the full guide
        self.schedules: Schedules | None = None  # set by bot.app.schedule.Schedules

    # -- commands --------------------------------------------------------------------------

    async def command(self, *, user: str, channel: str, text: str, lane: Lane | None = None) -> CommandReply:
        """`lane` is entered only for the Cloudflare-bound part, after help, audit and refusals."""
        try:
            cmd = parse(text)
        except ParseError as exc:
            return Notice(str(exc), kind="error", usage=True)
        if cmd.action == "help":
            return Help(self.admins(), self.guide_url)
        try:
            refusal = await self._refuse_command(user, channel, cmd)
            if refusal:
                return refusal
            if cmd.action == "audit":
                return AuditReport(
                    tuple(await self.audit.recent(cmd.count)),
                    tuple(await self.audit.recent(3, noise=True)),
                    await self.audit.refusals(),
                )
            async with lane() if lane is not None else contextlib.nullcontext():
                if cmd.action == "status":
                    return await self._status(cmd)
                if cmd.action == "sync":
                    return await sync_command(self.directory_sync)
                if cmd.action == "idle":
                    if self.idle is None:
                        return Notice("Idle seats are not available in this process.", kind="error")
                    return await self.idle.report(user=user, channel=channel, cmd=cmd)
                if cmd.action == "scheduled" or cmd.at is not None:  # bot/app/schedule.py
                    if self.schedules is None:
                        return Notice("Scheduled removals are not available here.", kind="error")
                    return await self.schedules.command(user=user, channel=channel, cmd=cmd)
                return await self.request(user, channel, cmd)
        except StoreUnavailable:
            log.error("Redis unavailable while handling a command")
            return Notice(UNAVAILABLE, kind="unavailable")

    async def _refuse_command(self, user: str, channel: str, cmd: Command) -> Notice | None:
        why, contacts = None, None
        if not self.policy.configured:
            why = "no admins configured"
            text = "No one may use this bot yet: set SEATBOT_ADMINS (Slack user IDs) or SEATBOT_ADMIN_GROUPS."
        elif not await self.auth.is_admin(user):
            why = "not an admin"
            text, contacts = "Only seat-bot admins may do that. Ask one of them:", self.admins()
        elif cmd.action == "revoke" and not self.policy.channel_allowed(channel):
            why = "channel not allowed"
            text = "Seats can't be revoked from this channel. Use"
            contacts = Contacts(channels=tuple(sorted(self.policy.channels)))
        elif cmd.action == "revoke" and self.policy.require_reason and not cmd.reason:
            why = "reason missing"
            text = "A reason is required: add `--reason <text>`."
        if why is None:
            return None
        targets = [t.value for t in cmd.targets]
        await self.audit.record(
            "refused", user=user, channel=channel, action=cmd.action, why=why, targets=targets or None
        )
        return Notice(text, kind="refused", contacts=contacts)

    def admins(self) -> Contacts:
        """The admins, to name in a refusal: people ask them, not for a setting they cannot see."""
        return Contacts(users=tuple(sorted(self.policy.admins)), groups=self.policy.admin_groups)

    async def _status(self, cmd: Command) -> StatusReport:
        done = await self.targets.lookup(cmd.targets)
        done.one_per_seat()  # one person, one line: as on a revoke card
        return StatusReport(
            tuple(user for _, user in done.found),
            tuple(done.problems),
            source=done.source,
            notes=(*cmd.notes, *done.duplicates),
            failed=len(done.failures),
            advice=done.advice() if done.failures else None,
        )

    async def request(self, user: str, channel: str, cmd: Command, at: float | None = None) -> CommandReply:
        """`/seat revoke` (with `at`: `--at`): resolve the targets and make the confirmation card."""
        done = await self.targets.lookup(cmd.targets)
        problems = done.problems
        targets: dict[str, PendingTarget] = {}
        notes = list(cmd.notes)
        no_seat = 0
        for label, access_user in done.found:
            uid = str(access_user.seat_uid)
            if access_user.has_no_seat:  # nothing to take away: no button, no PATCH for it
                no_seat += 1
                problems.append(f"{access_user.email or uid}: {NO_SEAT}")
                continue
            if uid in targets:
                notes.append(f"{label} is the same seat as {targets[uid].label}.")
                continue
            targets[uid] = pending_target(label, access_user)
        if not targets and done.failures:  # never "nothing to revoke" when the look-up failed
            failed = f"{len(done.failures)} of {len(cmd.targets)}"
            head = f"Could not look up {failed} target(s); nothing was changed."
            return Notice("\n".join([head, *problems, f"What to do: {done.advice()}"]), kind="error")
        if not targets:
            kind: NoticeKind = "info" if no_seat == len(problems) else "error"
            return Notice("\n".join(["Nothing to revoke.", *problems]), kind=kind)
        if at is not None and self.schedules and (dup := await self.schedules.duplicates(list(targets))):
            return dup
        now = self.clock()
        pending = Pending(
            id=new_id(),
            requester=user,
            channel=channel,
            targets=list(targets.values()),
            reason=cmd.reason,
            created_at=now,
            expires_at=now + self.policy.confirm_ttl,
            two_person=self.policy.two_person,
            at=at,
            tz=self.schedules.tz if at is not None and self.schedules else "UTC",
        )
        await self.store.put(pending, ttl=self.policy.confirm_ttl)
        audit_ok = await self.audit.record(
            "requested",
            id=pending.id,
            user=user,
            channel=channel,
            seats=[t.seat_uid for t in pending.targets],
            reason=cmd.reason,
            due=at,  # a scheduled removal's time; `at` is when this happened, as for every event
        )
        return Card(pending, tuple(problems), tuple(notes), audit_ok=audit_ok)

    # -- clicks ----------------------------------------------------------------------------

    async def click(
        self,
        *,
        action: Literal["confirm", "cancel"],
        pending_id: str,
        user: str,
        progress: Progress | None = None,
    ) -> ClickReply:
        try:
            return await self._click(action, pending_id, user, progress)
        except StoreUnavailable:
            log.error("Redis unavailable while handling a click")
            return Notice(UNAVAILABLE, kind="unavailable")

    async def _click(
        self, action: Literal["confirm", "cancel"], pending_id: str, user: str, progress: Progress | None
    ) -> ClickReply:
        is_admin = self.policy.configured and await self.auth.is_admin(user)
        if action == "confirm" and not is_admin:
            await self.audit.record("refused", user=user, action=action, id=pending_id, why="not an admin")
            return Notice(
                "Only seat-bot admins may confirm a revoke. Ask one of them:",
                kind="refused",
                contacts=self.admins(),
            )
        claim = await self.store.claim(
            pending_id,
            clicker=user,
            action=action,
            clicker_is_admin=is_admin,
            two_person=self.policy.two_person,
        )
        if claim.status == "busy":
            await self.audit.record("refused", user=user, action=action, id=pending_id, why="busy")
            if self.idle is not None and (run := await self.idle.running(pending_id)) is not None:
                # a sweep goes on by itself (bot/app/sweep.py): no "click again" for it
                return self.idle.under_way(Pending.loads(run.plan.pending or ""), run)
            return Notice(BUSY.format(s=claim.wait), kind="refused")
        if claim.status == "missing":
            await self.audit.record("expired_click", user=user, action=action, id=pending_id)
            return Notice(EXPIRED, kind="expired")
        if claim.status == "outdated":
            await self.audit.record("outdated", user=user, action=action, id=pending_id)
            return Notice(OUTDATED, kind="expired", replace=True)
        pending = claim.pending
        assert pending is not None
        if claim.status == "approved":  # a workflow's card: the first of its two admins
            ok = await self.audit.record(
                "approved", user=user, id=pending.id, requester=pending.requester, **_named(pending)
            )
            return Approved(pending, user, audit_ok=ok)
        if claim.status != "claimed":
            text = {
                "own_request": "Two-person rule: another admin has to confirm your request.",
                "own_approval": "Two-person rule: you approved this card; another admin has to confirm it.",
                "not_requester": f"Only the admin who asked for this can {action} it:",
            }.get(claim.status, "That button is not valid.")
            contacts = Contacts(users=(pending.requester,)) if claim.status == "not_requester" else None
            if claim.status == "not_requester" and (pending.in_channel or self.policy.two_person):
                # any admin may act on this card: this clicker is not one
                text, contacts = f"Only seat-bot admins can {action} this. Ask one of them:", self.admins()
            await self.audit.record(
                "refused", user=user, action=action, id=pending_id, why=claim.status, seats=seat_uids(pending)
            )
            return Notice(text, kind="refused", contacts=contacts)
        if action == "cancel":
            await self._finish(pending.id)
            ok = await self.audit.record(
                "cancelled", user=user, id=pending.id, requester=pending.requester, seats=seat_uids(pending)
            )
            return Cancelled(pending, user, audit_ok=ok)
        if not self.policy.channel_allowed(pending.channel):
            await self.audit.record(
                "refused", user=user, id=pending.id, why="channel no longer allowed", seats=seat_uids(pending)
            )
            return Notice("Seats can no longer be revoked from this channel.", kind="refused", replace=True)
        await self.audit.record(
            "confirmed",
            user=user,
            id=pending.id,
            requester=pending.requester,
            seats=seat_uids(pending),
            approved_by=pending.approved_by,
            **_named(pending),
        )
        if pending.sweep and self.idle is not None:
            swept = await self.idle.execute(pending, user, progress)
            await self._finish(pending.id)
            return swept
        if pending.at is not None:  # confirming schedules it; it never runs now
            if self.schedules is None:
                return Notice("Scheduled removals are not available here.", kind="error", replace=True)
            scheduled = await self.schedules.schedule(pending, user)
            await self._finish(pending.id)
            return scheduled
        if progress is not None:
            try:
                await progress(pending)
            except Exception:  # a progress note is a courtesy; the revoke goes on
                log.warning("could not show progress", exc_info=True)
        result = await self.revocation.execute(pending, user)
        await self._finish(pending.id)
        return result

    async def _finish(self, pending_id: str) -> None:
        """Later clicks on this card hear it was handled instead of resuming it."""
        try:
            await self.store.finish(pending_id)
        except StoreUnavailable:
            log.warning("could not mark the claim finished; a retry by the same admin would repeat it")

    async def _freed(self, uids: Sequence[str]) -> None:
        if self.idle is not None:  # the directory's idle facts learn it before the next sync
            await self.idle.source.freed(uids)


def _named(pending: Pending) -> dict[str, Any]:
    """Who a workflow's card names as its requester: recorded apart, as the claim it is."""
    return {"named_requester": pending.named_requester} if pending.named_requester else {}
