"""Probes and /metrics of real processes: `python -m bot serve` with two workers, Socket Mode, jobs."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, command_body, sign, stack_env
from tests.support.servers import RedisServer, clean_env, free_port, run_bot, wait_http
from tests.test_metrics import AUTH, TOKEN, value


async def test_two_workers_add_up_in_one_scrape(
    tmp_path: Path, slack: FakeSlack, redis_url: str, redis_client: object
) -> None:
    """WEB_CONCURRENCY=2: whichever worker answers a scrape, it counts both workers' starts and every
    command; a stale file in PROMETHEUS_MULTIPROC_DIR from an earlier run is removed at start."""
    port = free_port()
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left by an earlier run")
    env = clean_env(
        **stack_env(
            slack_api_url=slack.api_url,
            redis_url=redis_url,
            cf_port=free_port(),  # no Cloudflare call happens: only /seat help
            PORT=str(port),
            WEB_CONCURRENCY="2",
            SEATBOT_METRICS_TOKEN=TOKEN,
            PROMETHEUS_MULTIPROC_DIR=str(shared),
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_http, f"{base}/healthz", proc=proc)
        assert not (shared / "counter_999999.db").exists()

        async def scrape() -> str:
            async with httpx.AsyncClient() as http:  # a new connection each time: any worker answers
                response = await http.get(f"{base}/metrics", headers=AUTH)
            assert response.status_code == 200
            return response.text

        deadline = time.monotonic() + 30  # the second worker may still be starting
        while value(await scrape(), "seatbot_process_starts_total", role="serve") < 2:
            assert time.monotonic() < deadline, "the scrape never counted both workers"
            await asyncio.sleep(0.1)

        async def help_command(n: int) -> None:
            body = command_body("help", user=ADMIN, channel="C1", response_url=slack.response_url(f"h{n}"))
            async with httpx.AsyncClient() as http:
                assert (await http.post(f"{base}/slack/events", content=body, headers=sign(body))).is_success

        await asyncio.gather(*(help_command(n) for n in range(12)))
        for n in range(12):
            await slack.wait_responses(f"h{n}", 1, timeout=10)
        for _ in range(6):
            text = await scrape()
            assert value(text, "seatbot_commands_total", verb="help", result="info") == 12
            assert value(text, "seatbot_process_starts_total", role="serve") == 2
        assert len({p.name for p in shared.glob("counter_*.db")}) == 2  # one file per worker
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def start_bot(command: str, tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", command],
        cwd=tmp_path,
        env=clean_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def until(url: str, status: int, *, timeout: float = 20.0, **kw: Any) -> httpx.Response:
    """Poll `url` until it answers `status` (a probe changes when what it watches changes)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as http:
        while True:
            try:
                response = await http.get(url, **kw)
                if response.status_code == status:
                    return response
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} never answered {status}"
            await asyncio.sleep(0.1)


def stopped(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    return err.decode()


async def test_socket_mode_answers_probes_on_its_health_port(
    tmp_path: Path, slack: FakeSlack, private_redis: RedisServer
) -> None:
    """`python -m bot socket` with SEATBOT_HEALTH_PORT: ready once Slack's socket is open and Redis
    answers; /readyz 503 naming Redis when it stops and Slack when the socket is gone, /healthz 200
    all along; /metrics behind the token."""
    port = free_port()
    env = stack_env(
        slack_api_url=slack.api_url,
        redis_url=private_redis.url,
        cf_port=free_port(),
        SLACK_APP_TOKEN="xapp-1-test-socket-token",
        SEATBOT_HEALTH_PORT=str(port),
        SEATBOT_METRICS_TOKEN=TOKEN,
    )
    proc = start_bot("socket", tmp_path, env)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = await until(f"{base}/readyz", 200)
        assert ready.json() == {"ready": True, "redis": "ok", "slack": "connected"}
        assert slack.sockets and "apps.connections.open" in slack.methods()
        metrics = await until(f"{base}/metrics", 200, headers=AUTH)
        assert value(metrics.text, "seatbot_process_starts_total", role="socket") == 1
        assert (await until(f"{base}/metrics", 401)).status_code == 401

        private_redis.stop()
        down = await until(f"{base}/readyz", 503)
        assert down.json()["redis"] == "unreachable" and down.json()["slack"] == "connected"
        assert (await until(f"{base}/healthz", 200)).json()["ok"] is True
        private_redis.start()
        await until(f"{base}/readyz", 200)

        slack.refuse_sockets = True
        await slack.drop_sockets()
        gone = await until(f"{base}/readyz", 503)
        assert gone.json() == {"ready": False, "redis": "ok", "slack": "not connected"}
        assert (await until(f"{base}/healthz", 200)).json()["ok"] is True
    finally:
        logs = stopped(proc)
    assert TOKEN not in logs and "xapp-1-test-socket-token" not in logs


async def test_jobs_process_answers_probes_on_its_health_port(
    tmp_path: Path, slack: FakeSlack, private_redis: RedisServer
) -> None:
    """`python -m bot jobs` with SEATBOT_HEALTH_PORT: /healthz says its runner runs, /readyz follows
    Redis (stopped: 503, back: 200); SIGTERM stops it cleanly and the port closes."""
    port = free_port()
    env = stack_env(
        slack_api_url=slack.api_url,
        redis_url=private_redis.url,
        cf_port=free_port(),
        SEATBOT_HEALTH_PORT=str(port),
        SEATBOT_DIRECTORY_REFRESH_SECONDS="0",
    )
    proc = start_bot("jobs", tmp_path, env)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = await until(f"{base}/readyz", 200)
        assert ready.json() == {"ready": True, "redis": "ok", "job_runner": "running"}
        alive = await until(f"{base}/healthz", 200)
        assert alive.json()["job_runner"] == "running"
        assert (await until(f"{base}/metrics", 404)).status_code == 404  # no token: no metrics

        private_redis.stop()
        assert (await until(f"{base}/readyz", 503)).json()["redis"] == "unreachable"
        assert (await until(f"{base}/healthz", 200)).json()["ok"] is True
        private_redis.start()
        await until(f"{base}/readyz", 200)
    finally:
        stopped(proc)
    assert proc.returncode == 0
    async with httpx.AsyncClient(timeout=1) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"{base}/healthz")


def test_a_taken_health_port_is_one_configuration_line(tmp_path: Path, redis_url: str) -> None:
    """SEATBOT_HEALTH_PORT already in use: exit 2 with one line naming it, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = stack_env(
            slack_api_url="http://127.0.0.1:1/api/",
            redis_url=redis_url,
            cf_port=free_port(),
            SEATBOT_HEALTH_PORT=str(port),
            SEATBOT_HEALTH_HOST="127.0.0.1",
        )
        result = run_bot("jobs", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert f"SEATBOT_HEALTH_PORT: 127.0.0.1:{port} already in use" in result.stderr
    assert "Traceback" not in result.stderr
