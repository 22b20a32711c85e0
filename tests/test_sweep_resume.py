"""A sweep finishes what it started: its progress is in Redis per chunk, so when its runner stops
mid-chunk another process takes it over after the lease, sends the chunk in flight again, frees the
rest, audits every seat and reports once."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from typing import Any

import redis.asyncio as aredis

from bot.cloudflare.client import CloudflareClient
from bot.devtools.sandbox import Sandbox
from bot.domain.idle import IdleReport, SweepOutcome
from bot.domain.outcomes import Notice
from bot.domain.parse import parse
from bot.domain.policy import Policy
from tests.support.flow import audit_events, idle_flow
from tests.test_idle_flow import add_idle
from tests.test_idle_pause import RecordingRunner

POLICY = Policy(admins=frozenset({"UADMIN"}))


async def test_a_sweep_whose_runner_dies_mid_chunk_is_finished_by_another_process(
    sandbox: Sandbox, cf: CloudflareClient, redis_client: aredis.Redis
) -> None:
    """2,000 seats; the runner stops while its 14th chunk is in flight (13 freed). A second process's
    job, after the lease, frees all 2,000, audits each seat (the 14th chunk's too) and reports once."""
    users = add_idle(sandbox, 2000)
    runner, announced = RecordingRunner(), []

    async def announce(outcome: SweepOutcome) -> None:
        announced.append(outcome)

    one = idle_flow(cf, redis_client, policy=POLICY, later=runner, lease=5)
    report = await one.report(user="UADMIN", channel="C1", cmd=parse("idle --reason leavers"))
    assert isinstance(report, IdleReport) and report.pending is not None and report.pending.sweep == 2000
    pending = report.pending
    pages = math.ceil(sandbox.user_count / 100)  # the re-check's listing, then 13 PATCHes, then a hold
    sandbox.hold, sandbox.hold_from = asyncio.Event(), len(sandbox.requests) + pages + 13
    first = asyncio.create_task(one.execute(pending, "UADMIN", None))
    while len(sandbox.patches) < 14:
        await asyncio.sleep(0.01)
    first.cancel()  # the process stops: nothing more of it runs
    with contextlib.suppress(asyncio.CancelledError):
        await first
    sandbox.hold.set()
    assert sum(not u["access_seat"] for u in users) == 650
    assert runner.jobs and runner.jobs[0]["sweep_id"] == pending.id  # the watch a job runner will run

    two = idle_flow(cf, redis_client, policy=POLICY, later=runner, announce=announce, lease=5)
    await two.resume(sweep_id=pending.id)  # the watch, while the lease still runs: not taken over
    assert announced == [] and len(sandbox.patches) == 14
    two._clock = lambda: time.time() + 6  # the lease has run out
    await asyncio.gather(two.resume(sweep_id=pending.id), two.resume(sweep_id=pending.id))
    (done,) = announced
    assert done.finished_later and (len(done.freed), len(done.skipped), len(done.failed)) == (2000, 0, 0)
    assert sum(not u["access_seat"] for u in users) == 2000
    events = [e for e in await audit_events(redis_client) if e.get("sweep") is True]
    freed = Counter(e["seat_uid"] for e in events if e["event"] == "succeeded")
    assert len(freed) == 2000  # every seat, the chunk that was in flight included
    assert sum(e.get("note") == "sent again after its runner stopped" for e in events) == 50
    await two.resume(sweep_id=pending.id)  # a late watch: it is done, nothing more
    assert len(announced) == 1
    again = await two.execute(pending, "UADMIN", None)
    assert isinstance(again, Notice) and "has finished" in again.text


async def test_a_click_on_a_running_sweep_promises_nothing_it_cannot_do(
    sandbox: Sandbox, cf: CloudflareClient, redis_client: aredis.Redis
) -> None:
    """While a sweep runs, its card's click says how far it is and that it goes on by itself."""
    add_idle(sandbox, 200)
    idle = idle_flow(cf, redis_client, policy=POLICY, later=RecordingRunner(), lease=5)
    report = await idle.report(user="UADMIN", channel="C1", cmd=parse("idle"))
    assert isinstance(report, IdleReport) and report.pending is not None
    pages = math.ceil(sandbox.user_count / 100)
    sandbox.hold, sandbox.hold_from = asyncio.Event(), len(sandbox.requests) + pages + 2
    task: asyncio.Task[Any] = asyncio.create_task(idle.execute(report.pending, "UADMIN", None))
    while len(sandbox.patches) < 3:
        await asyncio.sleep(0.01)
    notice = await idle.execute(report.pending, "UADMIN", None)
    assert isinstance(notice, Notice) and "under way: 100 of 200" in notice.text
    assert "continues on its own" in notice.text and "click again" not in notice.text
    sandbox.hold.set()
    outcome = await task
    assert isinstance(outcome, SweepOutcome) and len(outcome.freed) == 200
