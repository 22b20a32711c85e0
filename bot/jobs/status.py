"""Is any job runner alive? For `python -m bot check` and a process that starts without one.

saq's workers each write their info to Redis every 10 s with an 11 s expiry (a sorted set of live
worker keys, `saq:<queue>:stats`, read by `Queue.info()`), so a runner that stopped or died drops
out within seconds. Without a runner nothing in the background happens: scheduled removals never
fire, the seat directory is not refreshed, paused sweeps and expired workflow steps wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from saq.queue.redis import RedisQueue

from bot.jobs.runner import queue_name
from bot.state.schedules import INDEX

log = logging.getLogger("seatbot.jobs")

WHAT_WAITS = "scheduled removals, the seat directory's refresh, paused sweeps and workflow-step expiry"
HOW = "run `python -m bot jobs`, or a web process with SEATBOT_JOB_RUNNER=true (the default)"


@dataclass(frozen=True)
class Runners:
    alive: list[str]  # "host pid N" of each live runner
    scheduled: int  # scheduled removals waiting

    def text(self) -> str:
        waiting = f"{self.scheduled} scheduled removal{'' if self.scheduled == 1 else 's'} waiting"
        if not self.alive:
            return f"no job runner is alive: {WHAT_WAITS} wait until one runs ({waiting}); {HOW}"
        more = len(self.alive) - 5
        where = ", ".join(self.alive[:5]) + (f" and {more} more" if more > 0 else "")
        return f"{len(self.alive)} job runner{'' if len(self.alive) == 1 else 's'} alive ({where}); {waiting}"


async def runners(redis: aredis.Redis) -> Runners:
    """The live job runners on this Redis (raises RedisError when Redis cannot be read)."""
    info = await RedisQueue(redis, name=queue_name(redis)).info()
    workers: dict[str, Any] = dict(info.get("workers") or {})
    alive = []
    for worker_id, data in sorted(workers.items()):
        meta = (data or {}).get("metadata") or {}
        alive.append(f"{meta.get('host', '?')} pid {meta.get('pid', '?')}" if meta else worker_id[:8])
    return Runners(alive, int(await redis.zcard(INDEX)))


async def warn_if_none(redis: aredis.Redis) -> Runners | None:
    """At the start of a process that runs no job runner itself: a warning when nobody runs one."""
    try:
        found = await runners(redis)
    except Exception:  # Redis down: the process's own checks say so
        return None
    if not found.alive:
        log.warning("SEATBOT_JOB_RUNNER=false here and %s", found.text())
    return found
