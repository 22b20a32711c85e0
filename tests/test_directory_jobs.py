"""The seat directory's refresh on the job runner (saq): real Redis, the real app, the sandbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aredis
from saq.job import Status

from bot.app.directory_sync import DirectorySync
from bot.config import Settings
from bot.devtools.sandbox import Sandbox
from bot.devtools.shell import ShellDirectory
from bot.jobs.directory import JOB, DirectoryRefresh
from bot.runtime import Runtime, build_runtime
from bot.state.directory import SeatDirectory
from tests.support.fake_slack import FakeSlack
from tests.support.harness import running


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Wait for a condition (polled): the jobs run on saq's own clock, not one a test can move."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def user_listings(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests if r.method == "GET" and "page" in r.query)


def refresh_of(runtime: Runtime) -> DirectoryRefresh:
    assert runtime.jobs is not None
    return DirectoryRefresh(sync=runtime.directory_sync, jobs=runtime.jobs)


async def test_a_fresh_start_syncs_on_the_job_runner_once_across_processes(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Two processes start on one Redis: one refresh job per time slot, one sync, the next slot armed."""
    async with running(slack, sandbox, redis_url) as a, running(slack, sandbox, redis_url) as b:
        runtimes: list[Runtime] = [a.app.state.runtime, b.app.state.runtime]
        for runtime in runtimes:
            await runtime.start_jobs()
        directory = SeatDirectory(redis_client)
        await until(lambda: _ready(directory))
        refresh = refresh_of(runtimes[0])
        assert runtimes[0].jobs is not None
        queue = runtimes[0].jobs.queue
        now = refresh.slot(time.time())
        ran = await queue.job(refresh.key(now)) or await queue.job(refresh.key(now - refresh.every))

        async def finished() -> bool:
            assert ran is not None
            job = await queue.job(ran.key)
            return job is not None and job.status == Status.COMPLETE

        await until(finished)
        assert user_listings(sandbox) == 1  # one sync, by one process
        following = await queue.job(refresh.key(now + refresh.every))
        assert following is not None and following.function == JOB
        assert [await refresh_of(rt).arm(now + refresh.every) for rt in runtimes] == [False, False]


async def test_a_run_arms_the_next_slot_and_syncs_only_when_due(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """The job itself, on an injected clock: not due → one Redis look, no listing; due → a sync."""
    async with running(slack, sandbox, redis_url, seatbot_directory_refresh_seconds=600) as bot:
        runtime: Runtime = bot.app.state.runtime
        assert runtime.jobs is not None
        clock = [time.time()]
        refresh = DirectoryRefresh(sync=runtime.directory_sync, jobs=runtime.jobs, clock=lambda: clock[0])
        assert refresh.every == 60
        slot = refresh.slot(clock[0])
        await refresh.run(slot=slot)  # empty directory: due
        assert user_listings(sandbox) == 1
        assert await runtime.jobs.queue.job(refresh.key(slot + 60)) is not None
        await refresh.run(slot=slot + 60)  # fresh: nothing to do
        assert user_listings(sandbox) == 1
        assert await runtime.jobs.queue.job(refresh.key(slot + 120)) is not None


async def test_off_means_no_refresh_job(slack: FakeSlack, sandbox: Sandbox, redis_url: str) -> None:
    """SEATBOT_DIRECTORY_REFRESH_SECONDS=0: the job is not even registered."""
    async with running(slack, sandbox, redis_url, seatbot_directory_refresh_seconds=0) as bot:
        runtime: Runtime = bot.app.state.runtime
        assert runtime.jobs is not None and JOB not in runtime.jobs._functions
        assert not hasattr(DirectorySync, "refresh_loop")  # no second, hand-made poller


@pytest.mark.usefixtures("isolated_env")
async def test_the_local_shell_store_syncs_on_its_in_process_job_runner() -> None:
    """No REDIS_URL (the shell, one process): the same job on the in-process store fills the directory."""
    settings = Settings(_env_file=None, seatbot_sandbox_users=250)
    runtime = build_runtime(settings, directory=ShellDirectory(), allow_sandbox=True)
    try:
        assert runtime.in_process_store and runtime.sandbox is not None
        await runtime.start_jobs()
        await until(lambda: _ready(SeatDirectory(runtime.redis)))
        assert (await runtime.directory_sync.status()).users == 250 + len(runtime.sandbox.users)
    finally:
        await runtime.aclose()


async def _ready(directory: SeatDirectory) -> bool:
    return (await directory.status()).state == "ready"
