"""The bench's processes, started one way for every topic: the fake Slack, the sandbox Cloudflare and
the bot (`python -m bot serve`, the Procfile's web line). redis-server is tests.support's RedisServer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET
from tests.support.servers import RedisServer, clean_env, free_port

Proc = subprocess.Popen[bytes]


def start(cmd: list[str], env: dict[str, str]) -> Proc:
    return subprocess.Popen(cmd, cwd="/tmp", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(url: str, proc: Proc, timeout: float = 30) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{url} did not come up")


def stop(procs: list[Proc], timeout: float = 10) -> None:
    """Terminates them all first, so they shut down together, then waits for each."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=timeout)


class RemoteSlack:
    """The fake Slack running in its own process, so its work does not slow the load generator."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.api_url = self.url + "/api/"

    def response_url(self, key: str) -> str:
        return f"{self.url}/response/{key}"

    async def responses(self, key: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            return list((await http.get(f"{self.url}/_responses/{key}")).json())

    async def wait(self, key: str, predicate: Any, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            found = await self.responses(key)
            if predicate(found):
                return found
            await asyncio.sleep(0.002)
        raise SystemExit(f"no response on {key}")


def fake_slack(procs: list[Proc], *args: str) -> RemoteSlack:
    """`python -m tests.support.fake_slack <port> [args]`, up and added to `procs`."""
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.fake_slack", str(port), *args]
    procs.append(start(cmd, clean_env(PYTHONPATH=str(ROOT))))
    slack = RemoteSlack(port)
    wait_up(f"{slack.url}/_responses/x", procs[-1])
    return slack


def sandbox(procs: list[Proc]) -> int:
    """`python -m bot sandbox`, up and added to `procs`; returns its port."""
    port = free_port()
    procs.append(start([sys.executable, "-m", "bot", "sandbox", "--port", str(port)], clean_env()))
    wait_up(f"http://127.0.0.1:{port}/_sandbox", procs[-1])
    return port


@dataclass(frozen=True)
class Bot:
    proc: Proc
    url: str
    startup: float  # seconds from spawn to /healthz answering


def serve(*, slack: RemoteSlack, redis_url: str, cf_port: int, admin: str, **env: str) -> Bot:
    """`python -m bot serve` on a free port against this stack, up; `env` adds or overrides settings."""
    port = free_port()
    settings = {
        "PORT": str(port),
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": slack.api_url,
        "REDIS_URL": redis_url,
        "CLOUDFLARE_ACCOUNT_ID": DEMO_ACCOUNT_ID,
        "CLOUDFLARE_API_TOKEN": DEMO_TOKEN,
        "CLOUDFLARE_BASE_URL": f"http://127.0.0.1:{cf_port}/client/v4",
        "SEATBOT_ADMINS": admin,
        "SEATBOT_LOG_LEVEL": "WARNING",
        **env,
    }
    proc = start([sys.executable, "-m", "bot", "serve"], clean_env(**settings))
    url = f"http://127.0.0.1:{port}"
    try:
        return Bot(proc, url, wait_up(f"{url}/healthz", proc))
    except BaseException:
        proc.terminate()  # the caller never gets it to stop
        raise


class Stack:
    """`with Stack(admin=...)`: a private redis-server, the fake Slack and the sandbox, stopped together
    (with anything added to `procs`) on leaving; `serve` starts a bot on them."""

    def __init__(self, *, admin: str, stop_timeout: float = 10) -> None:
        self.admin = admin
        self.server = RedisServer()
        self.procs: list[Proc] = []
        self.stop_timeout = stop_timeout
        self.keys = 0  # for response_url keys of the topic's own

    def __enter__(self) -> Self:
        self.server.start()
        try:
            self.slack = fake_slack(self.procs)
            self.cf_port = sandbox(self.procs)
        except BaseException:
            self.close()
            raise
        self.cf = f"http://127.0.0.1:{self.cf_port}"
        self.knobs = f"{self.cf}/_sandbox"
        self.redis = redis.Redis.from_url(self.server.url)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        stop(self.procs, timeout=self.stop_timeout)
        self.server.stop()

    def serve(self, **env: str) -> Bot:
        return serve(
            slack=self.slack, redis_url=self.server.url, cf_port=self.cf_port, admin=self.admin, **env
        )
