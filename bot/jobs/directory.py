"""The seat directory's periodic refresh, on the job runner (jobs/runner.py, saq) like all background work.

One job per time slot of `every` seconds, keyed by the slot's time, so every process that arms it
arms the same job and saq runs it once Redis-wide. A run arms the next slot first (the chain
survives a run that fails or a process that dies), then syncs if the directory is due. The sync
runs inside the job; the directory's lease (bot/app/directory_sync.py) stays the safety net, so a
`/seat sync` or a look-up that starts one meanwhile never makes two syncs at a time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from bot.app.directory_sync import DirectorySync
from bot.jobs.runner import JobRunner

log = logging.getLogger("seatbot.directory")

JOB = "directory_refresh"
RUN_TIMEOUT = 6 * 3600  # a 100,000-user sync on a small rate share takes minutes, never hours


def check_every(refresh_seconds: float) -> float:
    """How often the job looks: a tenth of the refresh period, between 1 s and a minute (one
    Redis round trip when nothing is due)."""
    return min(60.0, max(1.0, refresh_seconds / 10))


class DirectoryRefresh:
    """Register with `attach()`; the job runner then keeps the directory fresh from every process."""

    def __init__(
        self,
        *,
        sync: DirectorySync,
        jobs: JobRunner,
        every: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sync = sync
        self.jobs = jobs
        self.every = every if every is not None else check_every(sync.refresh_seconds)
        self._clock = clock

    def attach(self) -> None:
        """Nothing when the directory is off (SEATBOT_DIRECTORY_REFRESH_SECONDS=0)."""
        if not self.sync.enabled:
            return
        self.jobs.register(JOB, self.run)
        self.jobs.on_start.append(self.on_start)

    def slot(self, moment: float) -> float:
        """The start of the slot `moment` falls in."""
        return math.floor(moment / self.every) * self.every

    def key(self, slot: float) -> str:
        return f"{JOB}:{int(slot)}"

    async def arm(self, at: float) -> bool:
        """Queue the run of the slot starting at `at`; False when a process already did."""
        return await self.jobs.enqueue_at(
            JOB, key=self.key(at), at=at, run_timeout=RUN_TIMEOUT, retries=1, slot=at
        )

    async def on_start(self) -> None:
        """A process's job runner starts: a run now (an empty directory syncs at once, Slack is
        served meanwhile) and the next slot's. The keys keep both to one job across processes."""
        now = self._clock()
        try:
            await self.arm(self.slot(now))
            await self.arm(self.slot(now) + self.every)
        except Exception:  # Redis down at start: the next start, run or look-up brings it back
            log.warning("could not arm the directory refresh", exc_info=True)

    async def run(self, *, slot: float) -> None:
        """The job: arm the next slot, then sync here if the directory is due and nobody syncs."""
        try:
            await self.arm(max(slot, self.slot(self._clock())) + self.every)
        except Exception:
            log.warning("could not arm the next directory refresh", exc_info=True)
        if await self.sync.due():
            await self.sync.run_once()
