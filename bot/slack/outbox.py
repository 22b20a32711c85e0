"""Outcomes that reach Slack: chat.postMessage with retries for a bounded time, then the outbox.

Slack's 5xx and 429 (and lost connections) are retried with backoff and jitter, honouring
Retry-After, for at most SEATBOT_SLACK_RETRY_SECONDS (tenacity, as for Cloudflare). Whatever answer
Slack gives, even an HTTP 500 with a body that is not JSON, becomes one short reason, never an
exception: the caller goes on to its next post (the audit channel's copy is tried on its own). A
message still not taken is kept in Redis (bot/state/outbox.py), shown on the App Home, and tried
again every SEATBOT_OUTBOX_RETRY_SECONDS by the job runner, once Redis-wide, until Slack takes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
    wait_exponential_jitter,
)

from bot.domain.models import new_id
from bot.errors import StoreUnavailable
from bot.jobs.runner import JobRunner
from bot.logs import redact
from bot.state.outbox import OutboxStore, Undelivered

log = logging.getLogger("seatbot.outbox")

JOB = "slack_outbox"
MAX_ATTEMPTS = 12
LEASE_SECONDS = 600.0  # one retry run at a time Redis-wide (a run that dies frees it after this)
ADVICE = {  # what the operator can do about Slack's answer
    "not_in_channel": ": the bot is not in it; invite it with /invite @seatbot",
    "channel_not_found": ": the bot cannot see it; invite it with /invite @seatbot or check the channel ID",
    "is_archived": ": the channel is archived",
}
Message = Mapping[str, Any]
Sleep = Callable[[float], Awaitable[None]]


class Refusal(Exception):
    """One failed post: Slack's reason, whether another try may help, and its Retry-After."""

    def __init__(self, why: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.retryable = retryable
        self.retry_after = retry_after


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return None


def refusal(exc: BaseException) -> Refusal:
    """Any failure of a Web API call as one short reason (whatever shape Slack's answer had)."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        data = getattr(response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        raw_after = _header(getattr(response, "headers", None), "retry-after")
        try:
            after = float(raw_after) if raw_after is not None else None
        except ValueError:
            after = None
        status = int(status) if isinstance(status, int) else None
        why = f"{error}" if error else f"HTTP {status}" if status else "an unreadable answer"
        if status and not error and status >= 500:
            why = f"HTTP {status} (Slack's side)"
        retryable = (status is not None and (status == 429 or status >= 500)) or error in (
            "ratelimited",
            "internal_error",
            "fatal_error",
            "service_unavailable",
            "request_timeout",
        )
        return Refusal(why, retryable=retryable, retry_after=after)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError | SlackRequestError):
        return Refusal(f"no answer ({type(exc).__name__})", retryable=True)
    return Refusal(f"unexpected {type(exc).__name__}", retryable=False)


class _Wait:
    """Retry-After when Slack gives one, else exponential backoff with jitter."""

    def __init__(self, cap: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.5)
        self._cap = cap

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Refusal) and exc.retry_after is not None:
            return exc.retry_after  # past the deadline: the stop condition ends the tries instead
        return min(self._backoff(state), self._cap)


class SlackPoster:
    """chat.postMessage that answers why it failed instead of raising."""

    def __init__(
        self, client: AsyncWebClient, *, deadline: float = 60.0, sleep: Sleep = asyncio.sleep
    ) -> None:
        # Its own client without slack_sdk's retry handlers: the retries and their deadline are here.
        self._client = AsyncWebClient(
            token=client.token, base_url=client.base_url, timeout=client.timeout, retry_handlers=[]
        )
        self.deadline = deadline
        self._sleep = sleep

    async def post(self, channel: str, message: Message, *, patient: bool = True) -> Refusal | None:
        """None when Slack took the message, else its refusal; `patient=False`: one try only."""
        clean = json.loads(redact(json.dumps(dict(message))))
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, Refusal) and exc.retryable),
            wait=_Wait(cap=max(self.deadline, 0.0)),
            stop=stop_any(
                stop_after_attempt(MAX_ATTEMPTS if patient else 1), stop_before_delay(self.deadline)
            ),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        await self._client.chat_postMessage(
                            channel=channel, text=clean.get("text", ""), blocks=clean.get("blocks")
                        )
                    except Exception as exc:
                        raise refusal(exc) from None
        except Refusal as exc:
            return exc
        return None


class Outbox:
    """Deliver now if Slack lets us, else keep the message and retry it later (never only a log line)."""

    def __init__(
        self,
        *,
        store: OutboxStore,
        poster: SlackPoster,
        every: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.poster = poster
        self.every = every
        self._clock = clock

    async def deliver(self, channel: str, message: Message, *, what: str) -> bool:
        """Post `message` in `channel`; False when it was kept for later (or, Redis gone too, logged)."""
        refused = await self.poster.post(channel, message)
        if refused is None:
            return True
        why = refused.why
        item = Undelivered(
            id=new_id(),
            channel=channel,
            text=str(message.get("text", "")),
            blocks=message.get("blocks"),
            what=what,
            why=why,
            kept_at=self._clock(),
        )
        try:
            await self.store.keep(item)
        except StoreUnavailable:
            log.error(
                "Slack refused the %s for %s (%s) and Redis cannot keep it: it is only in this log: %s",
                what,
                channel,
                why,
                redact(item.text),
            )
            return False
        log.error(
            "Slack refused the %s for %s (%s%s): kept, retried every %g s (App Home lists it)",
            what,
            channel,
            why,
            ADVICE.get(why, ""),
            self.every,
        )
        return False

    async def retry(self) -> int:
        """One try for each kept message, oldest first, until Slack refuses one for a reason that
        says it is down or busy (5xx, 429, no answer): the rest wait for the next run. How many
        Slack took."""
        token = new_id()
        if not await self.store.lease(token, seconds=LEASE_SECONDS):
            return 0
        delivered = 0
        try:
            for item in await self.store.items():
                message = {"text": item.text, "blocks": item.blocks}
                refused = await self.poster.post(item.channel, message, patient=False)
                if refused is None:
                    await self.store.done(item.id)
                    delivered += 1
                    log.info("delivered the kept %s for %s (try %d)", item.what, item.channel, item.tries + 1)
                    continue
                await self.store.retried(item, refused.why)
                if refused.retryable:
                    break
        except StoreUnavailable:
            log.warning("could not retry the undelivered Slack messages: Redis unavailable")
        finally:
            await self.store.release(token)
        return delivered

    # -- on the job runner, like the directory's refresh (bot/jobs/directory.py) ----------------

    def attach(self, jobs: JobRunner) -> None:
        jobs.register(JOB, self._run)
        jobs.on_start.append(self.arm_next)
        self._jobs = jobs

    def _slot(self, moment: float) -> float:
        return math.floor(moment / self.every) * self.every + self.every

    async def arm_next(self) -> None:
        """Queue the next slot's run; its key keeps it to one job across processes."""
        at = self._slot(self._clock())
        try:
            await self._jobs.enqueue_at(
                JOB, key=f"{JOB}:{int(at)}", at=at, run_timeout=600, retries=1, slot=at
            )
        except Exception:
            log.warning("could not arm the retry of undelivered Slack messages", exc_info=True)

    async def _run(self, *, slot: float) -> None:
        await self.arm_next()
        await self.retry()
