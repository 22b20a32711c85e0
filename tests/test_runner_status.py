"""Whether a job runner is alive: `python -m bot check` and a process started without one (real Redis)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aredis

from bot.config import Settings
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.ops.check import run_checks
from bot.ops.startup import describe
from bot.runtime import Runtime
from tests.support.fake_slack import FakeSlack
from tests.support.harness import BOT_TOKEN, running, settings_for
from tests.support.servers import clean_env


async def jobs_line(settings: Settings) -> tuple[str, int]:
    lines: list[str] = []
    code = await run_checks(settings, out=lines.append, seconds=3)
    (line,) = [text for text in lines if " jobs: " in text]
    return line, code


async def test_check_says_whether_a_job_runner_is_alive(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """None running: WARN naming what waits and how to start one; one running: OK naming where."""
    settings = settings_for(slack, sandbox, redis_url)
    line, _ = await jobs_line(settings)
    assert line.startswith("WARN jobs: no job runner is alive") and "scheduled removals" in line
    assert "python -m bot jobs" in line
    async with running(slack, sandbox, redis_url) as bot:
        runtime: Runtime = bot.app.state.runtime
        await runtime.start_jobs()
        line, _ = await jobs_line(settings)
        assert line.startswith("OK   jobs: 1 job runner alive")
        assert f"{socket.gethostname()} pid {os.getpid()}" in line and "0 scheduled removals" in line
    line, _ = await jobs_line(settings)  # a runner that stopped leaves the list at once
    assert line.startswith("WARN jobs: no job runner is alive")


async def test_a_warning_does_not_fail_check(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Every part OK except no runner: exit code 0 (a deploy may start the runner after checking)."""
    lines: list[str] = []
    code = await run_checks(
        settings_for(slack, sandbox, redis_url, seatbot_admins=("UADMIN1",)), out=lines.append, seconds=3
    )
    statuses = {line.split()[1].rstrip(":"): line.split()[0] for line in lines}
    assert statuses["jobs"] == "WARN"
    assert code == (0 if set(statuses.values()) <= {"OK", "WARN"} else 1)


async def test_a_web_process_without_its_own_runner_warns_when_none_is_alive(
    slack: FakeSlack,
    sandbox: Sandbox,
    redis_url: str,
    redis_client: aredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SEATBOT_JOB_RUNNER=false and no `python -m bot jobs`: the start says removals would never fire."""
    async with running(slack, sandbox, redis_url, seatbot_job_runner=False) as bot:
        await bot.app.state.runtime.start_jobs()
    warned = [r.getMessage() for r in caplog.records if r.name == "seatbot.jobs"]
    assert any("no job runner is alive" in text for text in warned), warned
    caplog.clear()
    async with running(slack, sandbox, redis_url) as with_runner:
        await with_runner.app.state.runtime.start_jobs()
        async with running(slack, sandbox, redis_url, seatbot_job_runner=False) as web:
            await web.app.state.runtime.start_jobs()
    assert not [r for r in caplog.records if "no job runner is alive" in r.getMessage()]


@pytest.mark.usefixtures("isolated_env")
async def test_without_redis_and_without_a_runner_check_warns() -> None:
    """The in-process store has only this process: with its runner off nothing would ever run."""
    line, _ = await jobs_line(Settings(_env_file=None, seatbot_job_runner=False))
    assert line.startswith("WARN jobs: SEATBOT_JOB_RUNNER=false without REDIS_URL")
    line, _ = await jobs_line(Settings(_env_file=None))
    assert line.startswith("OK   jobs: in-process store")


def test_the_start_up_line_says_where_jobs_run() -> None:
    """One glance tells a deployer whether this process runs the background jobs."""
    on, off = Settings(_env_file=None), Settings(_env_file=None, seatbot_job_runner=False)
    assert describe(on, mode="http").endswith("· job runner in this process")
    assert "no job runner here (SEATBOT_JOB_RUNNER=false: `python -m bot jobs` runs them)" in describe(
        off, mode="socket"
    )


async def test_a_jobs_process_is_listed_while_it_runs_and_leaves_on_sigterm(
    tmp_path: Path, slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """`python -m bot jobs` (the Procfile's optional process type): alive in `check`; a deploy's
    SIGTERM stops it cleanly (exit 0) and `check` says at once that nothing runs the jobs."""
    settings = settings_for(slack, sandbox, redis_url, seatbot_directory_refresh_seconds=0)
    env = clean_env(
        REDIS_URL=redis_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=slack.api_url,
        CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
        CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
        CLOUDFLARE_BASE_URL=sandbox.base_url,
        SEATBOT_DIRECTORY_REFRESH_SECONDS="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "jobs"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            line, _ = await jobs_line(settings)
            if line.startswith("OK"):
                break
            assert proc.poll() is None
            await asyncio.sleep(0.05)
        assert line.startswith("OK   jobs: 1 job runner alive") and f"pid {proc.pid}" in line
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        line, _ = await jobs_line(settings)
        assert line.startswith("WARN jobs: no job runner is alive")
    finally:
        proc.kill()
