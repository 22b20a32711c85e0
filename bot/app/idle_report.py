"""The optional periodic idle report: posted to SEATBOT_IDLE_REPORT_CHANNEL on a cron schedule, once
across every process, on the job runner (each run arms the next; the job key is the run's time)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from croniter import croniter

from bot.app.sweep import IdleFlow
from bot.app.sweep_run import Later
from bot.domain.idle import IdleReport
from bot.errors import SeatbotError

log = logging.getLogger("seatbot.idle_report")

JOB = "idle_report"
Post = Callable[[IdleReport], Awaitable[None]]


class PeriodicReport:
    def __init__(
        self,
        *,
        idle: IdleFlow,
        channel: str,
        cron: str,
        later: Later,
        post: Post | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.idle = idle
        self.channel = channel
        self.cron = cron
        self.later = later
        self.post = post  # set by the Slack wiring
        self._clock = clock

    def next_run(self, after: float) -> float:
        """The first time the schedule fires strictly after `after` (UTC)."""
        start = datetime.fromtimestamp(after, UTC)
        return float(croniter(self.cron, start).get_next(float))

    async def arm(self) -> bool:
        """Make sure the next run is queued; True when this call queued it (the key makes it once)."""
        at = self.next_run(self._clock())
        return await self.later.enqueue_at(JOB, key=f"{JOB}:{int(at)}", at=at)

    async def on_start(self) -> None:
        """Every process arms the next run when its job runner starts; the key keeps it to one job."""
        try:
            await self.arm()
        except Exception:  # Redis down at start: the next start or run arms it
            log.warning("could not arm the periodic idle report", exc_info=True)

    async def run(self) -> None:
        """The job: post the report, then arm the next run (even when this one failed)."""
        try:
            report = await self.idle.scheduled_report(channel=self.channel, schedule=self.cron)
            if self.post is not None:
                await self.post(report)
        except SeatbotError as exc:
            log.error("the periodic idle report could not be made: %s", exc)
        finally:
            await self.arm()
