"""Where work after the ack waits: Cloudflare-bound commands share a few places and a deadline.

Help, refusals, cancel and audit never enter the lane, so they are answered at once however slow
Cloudflare is; a command that cannot finish (waiting included) within the deadline is stopped and
says so instead of holding its place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class DeadlineExceeded(Exception):
    """A Cloudflare-bound command ran out of time (waiting for a place counts)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"stopped after {seconds:g} s")
        self.seconds = seconds


class Lane:
    def __init__(self, *, places: int, deadline: float) -> None:
        self._places = asyncio.Semaphore(places)
        self.deadline = deadline

    @contextlib.asynccontextmanager
    async def enter(self) -> AsyncIterator[None]:
        """Wait for a place, then run; both within the deadline."""
        scope = asyncio.timeout(self.deadline)
        try:
            async with scope, self._places:
                yield
        except TimeoutError:
            if scope.expired():
                raise DeadlineExceeded(self.deadline) from None
            raise
