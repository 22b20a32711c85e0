"""Issue 17 §3: a Redis that lost its data is noticed and said; periodic work comes back (chaos).

Real processes (`python -m bot serve` and `python -m bot jobs`) on a redis-server of the test's own,
which is stopped and started again empty, as a Redis without persistence restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.redis_watch import OutageLines, RedisWatch
from bot.state.audit import STREAM
from tests.support.fake_slack import FakeSlack
from tests.support.harness import SlackClient, all_text, card_for, stack_env
from tests.support.servers import RedisServer, clean_env, free_port, run_bot, sandbox_process, wait_http

pytestmark = pytest.mark.chaos
AUDIT = "C0AUDIT"
WIPED = "Redis lost all its data"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def bot_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", *args], env=clean_env(**env), stdout=out, stderr=out
        )
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=15)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.2)


def health(port: int) -> dict[str, Any]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json())


def directory_ready(port: int) -> bool:
    try:
        return bool(health(port)["directory"]["state"] == "ready")
    except (httpx.HTTPError, ValueError):
        return False


async def test_a_wiped_redis_is_said_loudly_once_and_periodic_work_comes_back(
    tmp_path: Path, slack: FakeSlack, private_redis: RedisServer
) -> None:
    """Redis restarted empty under a web process and a job runner: an ERROR line in each, one notice in
    the audit channel and the audit trail, /healthz and `check` say it, the directory is rebuilt within
    one refresh period, and the job runner's outage is one line, not a traceback a second."""
    with sandbox_process(tmp_path) as cf_port:
        port = free_port()
        env = stack_env(
            slack_api_url=slack.api_url,
            redis_url=private_redis.url,
            cf_port=cf_port,
            PORT=str(port),
            SEATBOT_AUDIT_CHANNEL=AUDIT,
            SEATBOT_REDIS_CHECK_SECONDS="0.5",
            SEATBOT_DIRECTORY_REFRESH_SECONDS="30",  # checked every 3 s; once built, not due for 30 s
            SEATBOT_IDLE_REPORT_CHANNEL=AUDIT,  # its next run is armed again too
        )
        web_log, jobs_log = tmp_path / "web.log", tmp_path / "jobs.log"
        with (
            bot_process(["serve"], {**env, "SEATBOT_JOB_RUNNER": "false"}, web_log) as web,
            bot_process(["jobs"], env, jobs_log),
        ):
            wait_http(f"http://127.0.0.1:{port}/healthz", proc=web)
            await until(lambda: directory_ready(port), 30, "the first directory sync")
            assert "redis_wiped" not in health(port)

            private_redis.stop()
            await asyncio.sleep(3)  # the job runner's loops meet a Redis that is gone
            private_redis.start()  # same port, empty: no persistence
            await until(lambda: WIPED in web_log.read_text() and WIPED in jobs_log.read_text(), 15, "ERROR")
            await until(lambda: directory_ready(port), 25, "the directory rebuilt within one period (30 s)")
            wiped = health(port)["redis_wiped"]
            assert isinstance(wiped, dict) and "pid" in str(wiped["by"])
            armed = [armed_jobs(private_redis, name) for name in ("idle_report", "slack_outbox")]
            checked = await asyncio.to_thread(run_bot, "check", cwd=tmp_path, env=env, stdin="")
            await asyncio.sleep(1)  # more checks by both processes: still one notice
        notices = [p for p in slack.posts if p.get("channel") == AUDIT and WIPED in str(p.get("text"))]
        assert len(notices) == 1, notices
    redis_line = next(line for line in checked.stdout.splitlines() if " redis:" in line)
    assert redis_line.startswith("WARN redis: PING ok") and WIPED in redis_line, checked.stdout
    for text in (web_log.read_text(), jobs_log.read_text()):
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        said = [line for line in lines if WIPED in line["msg"]]
        assert said and all(line["level"] == "error" for line in said)
    jobs = jobs_log.read_text()
    assert "Traceback" not in jobs, jobs[-3000:]
    assert jobs.count("job runner cannot reach Redis") <= 1
    assert "Redis reachable again" in jobs
    events = [
        json.loads(raw) for _, fields in private_redis_events(private_redis) for raw in [fields[b"json"]]
    ]
    assert [e["event"] for e in events].count("redis_wiped") == 1
    report, outbox = armed  # re-armed: the weekly report's next run once, the outbox's retries
    assert len(report) == 1 and outbox, armed


def armed_jobs(server: RedisServer, name: str) -> list[bytes]:
    import redis

    client = redis.Redis(port=server.port)
    try:
        return list(client.scan_iter(f"saq:job:seatbot:{name}:*"))
    finally:
        client.close()


def private_redis_events(server: RedisServer) -> list[tuple[bytes, dict[bytes, bytes]]]:
    import redis

    client = redis.Redis(port=server.port)
    try:
        return list(client.xrange(STREAM))  # type: ignore[arg-type]
    finally:
        client.close()


async def test_seat_scheduled_says_removals_made_before_a_wipe_are_lost(
    bot: SlackClient, redis_client: aredis.Redis
) -> None:
    """After a wipe `/seat scheduled` no longer just says "No scheduled removals"."""
    other = RedisWatch(redis_client, every=60)  # another process's watch
    await other.mark()
    await redis_client.flushdb()
    assert await other.check() is not None
    listing = all_text(await card_for(bot, "scheduled"))
    assert "No scheduled removals." in listing and WIPED in listing and "schedule again" in listing


def test_only_a_lost_redis_is_folded_into_one_line() -> None:
    """Redis gone: the first of saq's tracebacks becomes one line, the rest are counted until it is
    back; any other error (a job's own) keeps its traceback."""
    lines = OutageLines(clock=lambda: 0.0)

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "saq", logging.ERROR, __file__, 1, "Error processing job %s", ("j",), (type(exc), exc, None)
        )

    own = record(OSError("disk full"))
    assert lines.filter(own) and own.exc_info is not None
    first, second = record(RedisConnectionError("refused")), record(RedisConnectionError("refused"))
    assert lines.filter(first) and first.exc_info is None and "cannot reach Redis" in first.getMessage()
    assert not lines.filter(second)
    assert lines.back() == 1 and lines.back() is None
