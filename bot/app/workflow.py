"""The Workflow Builder step "Remove Zero Trust seat" (callback_id `revoke_seat`), without Slack.

`start` turns the step's inputs into the same confirmation card a `/seat revoke` makes (or an
answer at once: a bad input, a seat already gone). What completing the step needs (the execution
id and the short-lived workflow token Slack sent) waits in Redis beside the card, for no longer
than the card lives, and is taken exactly once: by the click that confirms or cancels the card,
or by the expiry job when nobody clicked. The Slack side (bot/slack/workflow_step.py) posts the
card and calls functions.completeSuccess / functions.completeError with what this decides.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.app import targets
from bot.app.flow import SeatFlow
from bot.config import Settings
from bot.domain.models import WORKFLOW_REQUESTER, Pending, PendingTarget, new_id, valid_id
from bot.domain.outcomes import Cancelled, Card, ClickReply, Failure, Outcome
from bot.domain.parse import parse
from bot.domain.spend import Quota, charged
from bot.errors import ParseError, StoreUnavailable
from bot.jobs.runner import JobRunner
from bot.state.keys import key
from bot.state.pending import CLAIMED
from bot.state.pending import PREFIX as PENDING

log = logging.getLogger("seatbot.workflow")

CALLBACK_ID = "revoke_seat"
EXPIRE_JOB = "workflow_step_expire"
STEP = key("step:")
# One card per execution: Slack retries a function_executed it thinks went unanswered (and a captured
# body can be replayed within the signature's 5 minutes), so the first one claims its execution id.
RUN = key("step-run:")  # holds no token: outside STEP's keys
RUN_TTL = 86_400
UNKNOWN_REQUESTER = WORKFLOW_REQUESTER  # nobody Slack vouches for: see bot.domain.models
Outcome_ = Literal["revoked", "already_removed", "cancelled", "expired", "failed"]

# KEYS[1] the card's pending record, KEYS[2] its step record, KEYS[3] its claim marker. A claimed
# card belongs to its click (which completes the step); otherwise the card and the step go together
# (the pending record may have run out on its own TTL already).
_EXPIRE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
redis.call('DEL', KEYS[1])
local step = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
return step
"""


_SLACK_ID = re.compile(r"[A-Z0-9]{2,32}")


@dataclass(frozen=True)
class WorkflowLimits:
    """Cloudflare requests per minute that workflow runs may spend (the look-up behind each card).

    Slack's function_executed event names neither the workflow nor who ran it, so one workflow is
    keyed by its card channel (fixed when the workflow is built, and limited by SEATBOT_CHANNELS) and
    one runner by the `requester` input (typed by whoever builds or runs it: a courtesy bound, not a
    guarantee). The bound for all workflows together and the budget's workflow lane hold whatever
    the inputs say."""

    total: int = 60
    per_workflow: int = 30
    per_runner: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkflowLimits:
        return cls(
            total=settings.seatbot_workflow_requests_per_minute,
            per_workflow=settings.seatbot_workflow_channel_requests_per_minute,
            per_runner=settings.seatbot_workflow_runner_requests_per_minute,
        )

    def quotas(self, *, channel: str, runner: str) -> tuple[Quota, ...]:
        runner = runner if _SLACK_ID.fullmatch(runner) else "unnamed"
        channel = channel if _SLACK_ID.fullmatch(channel) else "unnamed"
        return (
            Quota(f"wf:runner:{runner}", self.per_runner, "workflows run by this requester"),
            Quota(f"wf:channel:{channel}", self.per_workflow, "workflows posting in this channel"),
            Quota("wf:all", self.total, "all workflows"),
        )


@dataclass(frozen=True)
class Step:
    """What completing one workflow step needs. `token` is Slack's workflow token: never logged."""

    execution_id: str
    channel: str
    token: str | None = None
    ts: str | None = None  # the card's message, once posted

    def __repr__(self) -> str:
        return f"Step(execution_id={self.execution_id!r}, channel={self.channel!r})"


@dataclass(frozen=True)
class Completion:
    """Complete the step: `outputs` for functions.completeSuccess, else `error` for completeError."""

    step: Step
    outputs: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Started:
    """`card` to post (then `remember`), or `done` at once; neither for an execution seen before."""

    card: Card | None = None
    done: Completion | None = None


def outputs(outcome: Outcome_, target: PendingTarget, seat: Any = None) -> dict[str, Any]:
    """The step's output parameters (manifest.yml): outcome, seat_uid, email, flags, updated_at."""
    return {
        "outcome": outcome,
        "seat_uid": target.seat_uid,
        "email": target.email or "",
        "access_seat": bool(seat.access_seat if seat is not None else target.access_seat),
        "gateway_seat": bool(seat.gateway_seat if seat is not None else target.gateway_seat),
        "updated_at": (seat.updated_at if seat is not None else None) or "",
    }


class WorkflowSteps:
    def __init__(
        self, *, flow: SeatFlow, redis: aredis.Redis, jobs: JobRunner, limits: WorkflowLimits | None = None
    ) -> None:
        self.flow = flow
        self.limits = limits or WorkflowLimits()
        self._redis = redis
        self._expire = redis.register_script(_EXPIRE)
        self.jobs = jobs
        self.on_expired: Any = None  # set by the Slack side: completes the step, updates the card
        jobs.register(EXPIRE_JOB, self._expire_job)

    async def start(self, *, execution_id: str, token: str | None, inputs: dict[str, Any]) -> Started:
        """A `function_executed` event: check the inputs, look the seat up, make the card."""
        channel = str(inputs.get("channel") or "")
        step = Step(execution_id, channel, token)
        try:
            if not await self._first(execution_id):
                log.info("function_executed %s seen before (a retry or a replay): ignored", execution_id)
                return Started()
            return await self._start(step, inputs)
        except (ParseError, ValueError) as exc:
            return Started(done=Completion(step, error=str(exc)))
        except StoreUnavailable:
            return Started(
                done=Completion(step, error="The bot's store is unavailable; nothing was changed.")
            )

    async def _first(self, execution_id: str) -> bool:
        try:
            return bool(await self._redis.set(RUN + execution_id, "1", nx=True, ex=RUN_TTL))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def _start(self, step: Step, inputs: dict[str, Any]) -> Started:
        policy = self.flow.policy
        if not step.channel:
            raise ValueError("The step needs a channel to post the confirmation card in.")
        if not policy.channel_allowed(step.channel):
            raise ValueError("Seats can't be revoked from that channel; pick one listed in SEATBOT_CHANNELS.")
        reason = " ".join(str(inputs.get("reason") or "").split())[:500] or None
        if policy.require_reason and not reason:
            raise ValueError("A reason is required (SEATBOT_REQUIRE_REASON): fill in the step's reason.")
        target, user = str(inputs.get("target") or "").strip(), str(inputs.get("user") or "").strip()
        if bool(target) == bool(user):
            raise ValueError("Give exactly one of `target` (an email or seat UID) or `user` (a Slack user).")
        text = (
            f"<@{user}>" if user else target.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        )
        cmd = parse(f"revoke {text}")
        if len(cmd.targets) != 1:
            raise ValueError("The step removes one seat at a time.")
        runner = str(inputs.get("requester") or "").strip()[:64]
        # started by whoever may run the workflow (usually not an admin): its look-up is on the
        # budget's workflow lane, within per-minute bounds, never in the room admins' revokes need
        with charged("workflow", *self.limits.quotas(channel=step.channel, runner=runner)):
            found, problems, _ = await self.flow.targets.resolve(cmd.targets)
        if not found:
            raise ValueError(problems[0] if problems else "No Zero Trust user found.")
        label, holder = found[0]
        pending_target = targets.pending_target(label, holder)
        if holder.has_no_seat:
            return Started(done=Completion(step, outputs=outputs("already_removed", pending_target)))
        now = self.flow.clock()
        ttl = policy.confirm_ttl
        # The `requester` input is text whoever builds or runs the workflow chose: it is kept as the
        # claim it is and decides nothing. Any admin may confirm; under the two-person rule one admin
        # approves and a second, different admin confirms, each identified by Slack (the clicker).
        pending = Pending(
            id=new_id(),
            requester=UNKNOWN_REQUESTER,
            named_requester=runner or None,
            channel=step.channel,
            targets=[pending_target],
            reason=reason,
            created_at=now,
            expires_at=now + ttl,
            two_person=policy.two_person,
        )
        await self.flow.store.put(pending, ttl=ttl)
        audit_ok = await self.flow.audit.record(
            "requested",
            id=pending.id,
            user=UNKNOWN_REQUESTER,
            named_requester=runner or None,
            channel=step.channel,
            seats=[pending_target.seat_uid],
            reason=reason,
            workflow=step.execution_id,
        )
        return Started(card=Card(pending, tuple(problems), audit_ok=audit_ok))

    async def remember(self, pending: Pending, step: Step) -> None:
        """Keep the step beside its card (same lifetime) and set the card's expiry job."""
        ttl = max(1, int(pending.expires_at - self.flow.clock()) + 30)  # the expiry job's few seconds
        try:
            await self._redis.set(STEP + pending.id, json.dumps(asdict(step)), ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        await self.jobs.enqueue_at(
            EXPIRE_JOB, key=f"{EXPIRE_JOB}:{pending.id}", at=pending.expires_at, pending_id=pending.id
        )

    async def posted(self, pending_id: str, *, ts: str | None) -> None:
        """Note the card's message (to update it on completion) unless a click already took the step."""
        if not ts:
            return
        try:
            raw = await self._redis.get(STEP + pending_id)
            if raw is not None:
                step = {**json.loads(raw), "ts": ts}
                # XX: a click that took the step in between is not undone; KEEPTTL: same lifetime
                await self._redis.set(STEP + pending_id, json.dumps(step), xx=True, keepttl=True)
        except RedisError:
            log.warning(
                "could not note the card's message for %s; its completion will not update it", pending_id
            )

    async def drop(self, pending_id: str) -> None:
        """The card could not be posted: nobody can click it, so it and its step go."""
        try:
            await self._redis.delete(PENDING + pending_id, STEP + pending_id)
        except RedisError:
            log.warning("could not drop an unposted card")

    async def after_click(self, pending_id: str, reply: ClickReply) -> Completion | None:
        """A click on a step's card: the completion it calls for, taken once (None: not yet, or not ours)."""
        if isinstance(reply, Outcome):
            (result,) = reply.results[:1] or (None,)
            step = await self._take(pending_id)
            if step is None or result is None:
                return None
            if result.confirmed:
                return Completion(step, outputs=outputs("revoked", result.target, result.seat))
            return Completion(
                step, error="Cloudflare did not confirm the seat was removed; check /seat status."
            )
        if isinstance(reply, Failure):
            step = await self._take(pending_id)
            return None if step is None else Completion(step, error=f"The removal failed: {reply.error}")
        if isinstance(reply, Cancelled):
            step = await self._take(pending_id)
            return (
                None
                if step is None
                else Completion(step, error=f"Cancelled by {reply.by}: nothing was changed.")
            )
        return (
            None  # a refusal (the card stays for an admin) or an expired card (the expiry job completes it)
        )

    async def _take(self, pending_id: str) -> Step | None:
        try:
            raw = await self._redis.getdel(STEP + pending_id)
        except RedisError:
            log.error("could not read the workflow step of %s", pending_id)
            return None
        return None if raw is None else Step(**json.loads(raw))

    async def _expire_job(self, *, pending_id: str) -> None:
        """The card's TTL is over: if nobody clicked, it expires and the step completes with an error."""
        if not valid_id(pending_id):
            return
        raw = await self._expire(keys=[PENDING + pending_id, STEP + pending_id, CLAIMED + pending_id])
        if not raw:
            return  # a click took it
        step = Step(**json.loads(raw))
        await self.flow.audit.record("expired_click", id=pending_id, workflow=step.execution_id)
        if self.on_expired is not None:
            await self.on_expired(
                Completion(step, error="Nobody confirmed the removal in time (the card expired).")
            )
