"""One way to change anything in Cloudflare: a plan of steps, run through the rate budget on a lane.

A click (bot/app/revocation.py), a scheduled removal (bot/app/schedule.py), an idle sweep's chunk
(bot/app/sweep_run.py) and, through the click, a Workflow Builder step all hand their change to
`Executor.run` and read the same `Applied` back: per step, what Cloudflare confirmed, and the error
that stopped it (what is in `seats` did happen even then: a later chunk may fail after earlier ones
went through). Deciding *what* to change (the look-ups, the re-checks) and recording it stay with
the caller; retrying a failing plan for a while is `run_with_retries`, on tenacity like the HTTP
transport's own retries.

A step is one kind of change. Today that is `FreeSeats` (PATCH /access/seats, both flags false, 50
seats a request); the offboarding issue adds ending a person's sessions (`revoke_user`) and keeping
them out (a block-list append) as further step types with their own result fields, run by the same
loop, so every path gets them at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import AsyncRetrying, RetryError, retry_if_result, stop_after_delay, wait_exponential

from bot.cloudflare.budget import Lane
from bot.domain.models import Seat, SeatUpdate
from bot.errors import SeatsError

log = logging.getLogger(__name__)


class SeatWriter(Protocol):
    async def update_seats(
        self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive"
    ) -> list[Seat]: ...


@dataclass(frozen=True)
class FreeSeats:
    """Free these seats: access_seat and gateway_seat false (Cloudflare chunks of 50)."""

    seat_uids: tuple[str, ...]


Step = FreeSeats  # the offboarding steps join this union


@dataclass(frozen=True)
class Plan:
    """What to change, in order; a step runs after the one before it has its answer."""

    steps: tuple[Step, ...]

    @classmethod
    def free(cls, seat_uids: Iterable[str]) -> Plan:
        return cls((FreeSeats(tuple(seat_uids)),))


@dataclass(frozen=True)
class StepResult:
    step: Step
    seats: tuple[Seat, ...] = ()  # Cloudflare's answer for the seats it updated, in request order
    error: SeatsError | None = None  # what stopped the step; `seats` still happened

    @property
    def by_uid(self) -> dict[str, Seat]:
        return {s.seat_uid: s for s in self.seats}


@dataclass(frozen=True)
class Applied:
    """What Cloudflare said about a plan: one result per step that ran."""

    plan: Plan
    steps: tuple[StepResult, ...]
    attempts: int = 1

    @property
    def error(self) -> SeatsError | None:
        return next((r.error for r in self.steps if r.error is not None), None)

    @property
    def seats(self) -> dict[str, Seat]:
        """Every seat Cloudflare returned, by UID (a seat missing here was not confirmed)."""
        return {uid: s for r in self.steps for uid, s in r.by_uid.items()}

    def freed(self, seat_uid: str) -> bool:
        seat = self.seats.get(seat_uid)
        return seat is not None and seat.removed


class Unexpected(SeatsError):
    """A bug or a surprise while changing Cloudflare: what happened is unknown."""


def unexpected(exc: BaseException, what: str = "the seats") -> SeatsError:
    """A bug or a surprise while changing Cloudflare: the outcome is unknown, so the error says so."""
    return Unexpected(f"unexpected error ({type(exc).__name__}); check {what} with /seat status")


class Executor:
    def __init__(self, cloudflare: SeatWriter) -> None:
        self.cloudflare = cloudflare

    async def run(self, plan: Plan, *, lane: Lane) -> Applied:
        """Run every step once, through the rate budget's `lane`; stop at the first step that fails."""
        results: list[StepResult] = []
        for step in plan.steps:
            result = await self._free(step, lane)
            results.append(result)
            if result.error is not None:
                break
        return Applied(plan, tuple(results))

    async def _free(self, step: FreeSeats, lane: Lane) -> StepResult:
        if not step.seat_uids:
            return StepResult(step)
        try:
            updates = [SeatUpdate(seat_uid=uid) for uid in step.seat_uids]
            return StepResult(step, tuple(await self.cloudflare.update_seats(updates, lane=lane)))
        except SeatsError as exc:
            return StepResult(step, tuple(s for s in exc.completed if isinstance(s, Seat)), exc)
        except Exception as exc:  # a bug or a surprise: the outcome is unknown, so the error says so
            log.exception("revoke failed unexpectedly (changing Cloudflare)")
            return StepResult(step, (), unexpected(exc))


Attempt = Callable[[int], Awaitable[Any]]


async def run_with_retries(
    attempt: Attempt,
    *,
    done: Callable[[Any], bool],
    window: float,
    first_delay: float,
    sleep: Callable[[float], Awaitable[Any]],
    what: str = "a change",
) -> tuple[Any, int]:
    """Call `attempt(n)` until `done(result)` or `window` seconds have passed, waiting `first_delay`
    doubled each time (at most 60 s) in between; returns the last result and how many attempts ran."""
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda result: not done(result)),
        stop=stop_after_delay(window),
        wait=wait_exponential(multiplier=first_delay, exp_base=2, max=60),
        sleep=sleep,
        before_sleep=lambda state: log.warning(
            "%s: attempt %d did not finish, retrying", what, state.attempt_number
        ),
    )
    result: Any = None
    number = 0
    try:
        async for try_ in retrying:
            with try_:
                number = try_.retry_state.attempt_number
                result = await attempt(number)
            outcome = try_.retry_state.outcome
            if outcome is not None and not outcome.failed:  # tenacity's way to retry on a result
                try_.retry_state.set_result(result)
    except RetryError:
        pass
    return result, number
