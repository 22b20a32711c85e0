"""A sweep the rate budget cannot finish now: the rest waits in Redis, resumes once, and reports."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aredis

from bot.app.sweep_run import RESUME_JOB
from bot.cloudflare.client import CloudflareClient
from bot.devtools.demo_idle import user_at
from bot.devtools.sandbox import Sandbox
from bot.domain.idle import IdleReport, SweepOutcome
from bot.domain.parse import parse
from bot.domain.policy import Policy
from bot.state.audit import STREAM
from tests.support.flow import idle_flow

NOW = datetime.now(UTC)


class RecordingRunner:
    """Stands in for the job runner's enqueue: keeps what would run, and when."""

    def __init__(self, *, alive: bool = True) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.is_alive = alive

    async def alive(self) -> bool:
        return self.is_alive

    async def enqueue_at(self, name: str, *, key: str, at: float, **kwargs: Any) -> bool:
        self.jobs.append({"name": name, "key": key, "at": at, **kwargs})
        return True


async def test_a_paused_sweep_resumes_once_and_reports(
    sandbox: Sandbox, cf: CloudflareClient, redis_client: aredis.Redis
) -> None:
    """429s after two chunks: those 100 are freed now, 150 wait; the job frees them and reports."""
    users = [
        sandbox.add_user(
            user_at(
                f"p{n:04d}@example.com", last_login=NOW - timedelta(days=60), created=NOW - timedelta(days=99)
            )
        )
        for n in range(250)
    ]
    runner, announced = RecordingRunner(), []

    async def announce(outcome: SweepOutcome) -> None:
        announced.append(outcome)

    policy = Policy(admins=frozenset({"UADMIN"}))
    idle = idle_flow(cf, redis_client, policy=policy, later=runner, announce=announce, retry_seconds=30)
    report = await idle.report(user="UADMIN", channel="C1", cmd=parse("idle --reason budget test"))
    assert isinstance(report, IdleReport) and report.pending is not None
    pending = report.pending
    # two chunks go through, then Cloudflare says 429 to every attempt the client makes
    sandbox.inject(status=429, times=1, methods=("PATCH",), skip=2, retry_after="1")
    sandbox.inject(status=429, times=5, methods=("PATCH",), retry_after="1")
    first = await idle.execute(pending, "UADMIN", None)
    assert isinstance(first, SweepOutcome)
    assert (len(first.freed), len(first.failed), first.deferred) == (100, 0, 150)
    # a watch for the runner's lease, and the continuation at the pause's end
    watch, job = runner.jobs
    assert job["name"] == RESUME_JOB and job["sweep_id"] == pending.id and job["at"] >= first.now + 29
    assert watch["name"] == RESUME_JOB and watch["sweep_id"] == pending.id
    assert sum(not u["access_seat"] for u in users) == 100
    await idle.resume(sweep_id=pending.id)  # the watch: the pause is not over, nothing happens
    assert sum(not u["access_seat"] for u in users) == 100 and announced == []

    users[-1]["last_successful_login"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")  # signed in during the pause
    idle._clock = lambda: job["at"] + 1
    await asyncio.gather(idle.resume(sweep_id=pending.id), idle.resume(sweep_id=pending.id))
    (later,) = announced  # one report, of the whole sweep
    assert later.finished_later and (len(later.freed), len(later.skipped), later.deferred) == (249, 1, 0)
    assert sum(not u["access_seat"] for u in users) == 249
    events = [json.loads((d or {})[b"json"]) for _, d in await redis_client.xrange(STREAM) or []]
    assert [e["event"] for e in events].count("deferred") == 1
    per_seat = [e for e in events if e.get("sweep") is True and e["event"] == "succeeded"]
    assert len(per_seat) == 249 and len({e["seat_uid"] for e in per_seat}) == 249


async def test_without_a_live_job_runner_a_sweep_promises_no_continuation(
    sandbox: Sandbox, cf: CloudflareClient, redis_client: aredis.Redis
) -> None:
    """429s after one chunk and no job runner alive anywhere: the rest is reported not sent, saying
    why, instead of "continuing" (nobody would continue it)."""
    for n in range(120):
        sandbox.add_user(
            user_at(
                f"q{n:04d}@example.com", last_login=NOW - timedelta(days=60), created=NOW - timedelta(days=99)
            )
        )
    runner = RecordingRunner(alive=False)
    idle = idle_flow(cf, redis_client, policy=Policy(admins=frozenset({"UADMIN"})), later=runner)
    report = await idle.report(user="UADMIN", channel="C1", cmd=parse("idle"))
    assert isinstance(report, IdleReport) and report.pending is not None
    sandbox.inject(status=429, times=1, methods=("PATCH",), skip=1, retry_after="1")
    sandbox.inject(status=429, times=5, methods=("PATCH",), retry_after="1")
    outcome = await idle.execute(report.pending, "UADMIN", None)
    assert isinstance(outcome, SweepOutcome) and outcome.deferred == 0
    assert (len(outcome.freed), len(outcome.failed)) == (50, 70)
    assert all("no job runner is alive" in why for _, why in outcome.failed)
    assert len(runner.jobs) == 1  # the lease's watch only: no continuation set
