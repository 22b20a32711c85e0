"""One executor for every change in Cloudflare (issue 19 §1): nothing else sends one, a plan runs in
chunks on the lane it is given, what went through before a failure is kept, retries are tenacity's."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

from bot.cloudflare.budget import Lane
from bot.cloudflare.client import CloudflareClient
from bot.devtools.sandbox import Sandbox
from bot.devtools.synthetic import synthetic_uid
from bot.domain.models import Seat, SeatUpdate
from bot.errors import InvalidRequest
from bot.executor import Executor, Plan, Unexpected, run_with_retries

BOT = Path(__file__).resolve().parents[1] / "bot"
CHANGES = {"update_seats"}  # the Cloudflare operations that change something (issue 20 adds more)


def test_only_the_executor_changes_cloudflare() -> None:
    """No module but bot/executor.py (and the client defining the operation) calls a changing
    operation: click, schedule, sweep and workflow all go through `Executor.run`."""
    callers = []
    for path in sorted(BOT.rglob("*.py")):
        if path.name == "executor.py" or path.parent.name == "cloudflare":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in CHANGES and isinstance(node.ctx, ast.Load):
                callers.append(f"{path.relative_to(BOT.parent)}:{node.lineno}")
    assert callers == [], callers


class Lanes:
    """Records the lane every change was sent on."""

    def __init__(self, inner: CloudflareClient) -> None:
        self.inner, self.lanes = inner, list[Lane]()

    async def update_seats(self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive") -> list[Seat]:
        self.lanes.append(lane)
        return await self.inner.update_seats(updates, lane=lane)


async def test_a_plan_runs_in_chunks_on_its_lane_and_keeps_what_went_through(
    sandbox: Sandbox, cf: CloudflareClient
) -> None:
    """120 seats on the bulk lane: 3 PATCHes, all freed. Then a failure on the second chunk: the
    first 50 are reported done, the error is kept, nothing raises."""
    sandbox.synthetic.resize(300)
    writer = Lanes(cf)
    executor = Executor(writer)
    applied = await executor.run(Plan.free(synthetic_uid(n) for n in range(1, 121)), lane="bulk")
    assert applied.error is None and len(applied.seats) == 120 and applied.freed(synthetic_uid(120))
    assert len(sandbox.patches) == 3 and set(writer.lanes) == {"bulk"}
    sandbox.inject(status=400, code=10001, message="seat locked", methods=("PATCH",), skip=1)
    applied = await executor.run(Plan.free(synthetic_uid(n) for n in range(121, 241)), lane="interactive")
    assert isinstance(applied.error, InvalidRequest) and "seat locked" in applied.error.describe()
    assert sorted(applied.seats) == sorted(synthetic_uid(n) for n in range(121, 171))
    assert not applied.freed(synthetic_uid(171))


class Broken:
    async def update_seats(self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive") -> list[Seat]:
        raise KeyError("surprise")


async def test_a_bug_is_an_unexpected_error_not_a_crash() -> None:
    applied = await Executor(Broken()).run(Plan.free(["a"]), lane="interactive")
    assert isinstance(applied.error, Unexpected) and "KeyError" in applied.error.describe()
    assert applied.seats == {}


async def test_retries_wait_doubling_until_done_or_the_window_ends() -> None:
    """Not done twice, then done: three attempts, waits 1 s then 2 s (tenacity, injected sleep);
    never done within a window of 0: one attempt."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def attempt(number: int) -> bool:
        return number >= 3

    result, attempts = await run_with_retries(attempt, done=bool, window=60, first_delay=1, sleep=sleep)
    assert (result, attempts, waits) == (True, 3, [1, 2])

    async def never(number: int) -> bool:
        return False

    result, attempts = await run_with_retries(never, done=bool, window=0, first_delay=1, sleep=sleep)
    assert (result, attempts) == (False, 1)
