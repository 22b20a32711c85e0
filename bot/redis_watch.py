"""Noticing a Redis that lost everything, and saying so: a marker key written at start and checked.

Schedules, open confirmation cards, sweeps' progress, the audit trail and the job queue (with the
chains that keep periodic work going) all live in Redis. A Redis restarted without persistence, or
flushed, comes back empty and answers as if nothing were wrong. So every process that runs the bot
writes a marker key (with a random epoch) at start and checks it every SEATBOT_REDIS_CHECK_SECONDS:
a marker gone, or with another epoch than last seen, while Redis answers means the data is gone. The
process that notices first writes the new marker (SET NX), records the wipe (kept a week, for
/healthz and `check`), audits it and posts it to SEATBOT_AUDIT_CHANNEL; every process logs it at
ERROR and re-arms the periodic work (directory refresh, idle report, retry of undelivered
Slack messages), whose job keys keep each run to one across processes.

The same check tells when Redis stops and starts answering: one line per change, and the job
library's traceback per second while it is down is cut to one line (`OutageLines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.domain.models import new_id
from bot.state.keys import key

log = logging.getLogger("seatbot.redis")

MARKER = key("marker")
WIPED = key("redis_wiped")
KEEP_NOTICE = 7 * 86400  # seconds /healthz and `check` keep showing a wipe

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Wipe:
    """Redis was found empty (restarted without persistence, or flushed) by `by` at `at`."""

    at: float
    by: str

    def text(self) -> str:
        stamp = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"Redis lost all its data (found empty at {stamp} by {self.by}): scheduled removals, open "
            "confirmation cards, paused sweeps and the audit trail kept there before are gone; periodic "
            "work was re-armed. Check `/seat scheduled` and schedule again what is missing; turn on "
            "Redis persistence (appendonly yes) so a restart keeps them."
        )

    def as_json(self) -> dict[str, object]:
        return {"at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds"), "by": self.by}


def _is_outage(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):  # redis-py wraps socket errors
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class OutageLines(logging.Filter):
    """While Redis is down, saq logs a full traceback about every second from each of its loops
    (~16 MB an hour per process): the first becomes one line without its traceback, the rest are
    counted until Redis answers again (`back()`, from the watch) or a minute passes without one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.down = False
        self.suppressed = 0
        self._last = 0.0
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not _is_outage(exc):
            return True
        now = self._clock()
        if self.down and now - self._last < 60:
            self._last = now
            self.suppressed += 1
            return False
        self.down, self._last = True, now
        record.msg = "job runner cannot reach Redis (%s: %s); said once until it answers again"
        record.args = (type(exc).__name__, str(exc)[:200])
        record.exc_info, record.exc_text = None, None
        return True

    def back(self) -> int | None:
        """Redis answers again: how many lines were left out (None when none was down)."""
        if not self.down:
            return None
        left_out, self.down, self.suppressed = self.suppressed, False, 0
        return left_out


OUTAGE_LINES = OutageLines()
logging.getLogger("saq").addFilter(OUTAGE_LINES)


class RedisWatch:
    """The marker, its check loop, the wipe notice and re-arming (see the module's docstring)."""

    def __init__(
        self,
        redis: aredis.Redis,
        *,
        every: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.every = every
        self.rearm: list[Hook] = []  # every periodic chain's arming (idempotent across processes)
        self.on_wipe: list[Callable[[Wipe], Awaitable[None]]] = []  # audit, the audit channel
        self.name = f"{socket.gethostname()} pid {os.getpid()}"
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._reachable: bool | None = None
        self._seen: str | None = None  # the marker's epoch as this process last saw it

    async def start(self) -> None:
        if self._task is not None:
            return
        await self.mark()
        self._task = asyncio.create_task(self._loop(), name="seatbot-redis-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _marker(self) -> str:
        return json.dumps({"epoch": new_id(), "since": round(self._clock(), 3), "by": self.name})

    async def _epoch(self) -> tuple[str, bool]:
        """The marker's epoch, writing a new one if the marker is gone; True when this call wrote it."""
        wrote = bool(await self.redis.set(MARKER, self._marker(), nx=True))
        raw = await self.redis.get(MARKER)
        try:
            return str(json.loads(raw or b"{}").get("epoch") or ""), wrote
        except ValueError:
            return "", wrote

    async def mark(self) -> None:
        """Write the marker unless it is there (start-up: an absent one is a first start) and remember
        its epoch: a marker with another epoch later means Redis was emptied in between."""
        try:
            self._seen, _ = await self._epoch()
        except (RedisError, OSError):
            log.warning("could not write the Redis marker at start; written at the next check")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watch die: the next check tries again
                log.exception("the Redis check failed")

    async def check(self) -> Wipe | None:
        """One check: a Wipe when Redis was emptied since the last one (noticed here or by another
        process, which wrote a new epoch), else None."""
        try:
            epoch, first = await self._epoch()
        except (RedisError, OSError) as exc:
            if self._reachable is not False:
                log.error("Redis unreachable (%s); checked again every %g s", type(exc).__name__, self.every)
            self._reachable = False
            return None
        if self._reachable is False:
            left_out = OUTAGE_LINES.back()
            extra = f" ({left_out} repeated job-runner errors left out)" if left_out else ""
            log.warning("Redis reachable again%s", extra)
        self._reachable = True
        seen, self._seen = self._seen, epoch
        if seen is None or epoch == seen:  # unchanged (or the first look since a failed start)
            return None
        wipe = Wipe(at=self._clock(), by=self.name)
        if first:  # one process records it, tells the audit trail and the audit channel
            try:
                await self.redis.set(WIPED, json.dumps(asdict(wipe)), ex=KEEP_NOTICE)
            except (RedisError, OSError):
                log.warning("could not record the wipe notice in Redis")
        else:
            wipe = await last_wipe(self.redis) or wipe
        log.error("%s", wipe.text(), extra={"redis_wiped": wipe.as_json()})
        if first:
            for tell in self.on_wipe:
                try:
                    await tell(wipe)
                except Exception:
                    log.exception("could not pass on the wipe notice")
        for arm in self.rearm:  # every process: the jobs' keys keep each run to one
            try:
                await arm()
            except Exception:
                log.exception("could not re-arm periodic work after the wipe")
        return wipe


async def last_wipe(redis: aredis.Redis) -> Wipe | None:
    """The wipe noticed in the last week, if any (None also when Redis cannot say)."""
    try:
        raw = await redis.get(WIPED)
    except (RedisError, OSError):
        return None
    try:
        return Wipe(**json.loads(raw)) if raw else None
    except (TypeError, ValueError):
        return None
