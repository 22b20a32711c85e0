"""Shared fixtures: a real Redis server for the session, the Cloudflare stand-in, captured logs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from bot.cloudflare import CloudflareClient
from bot.sandbox import DEMO_ACCOUNT_ID, DEMO_TOKEN, Sandbox
from tests.harness import SlackClient, build
from tests.slack_fake import FakeSlack

SHARED = Path(__file__).resolve().parents[2] / "shared"
CF_SPEC = SHARED / "cloudflare" / "seats-openapi.json"
SLACK_MANIFEST_SCHEMA = SHARED / "slack" / "manifest.schema.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server on a free port, stoppable and restartable (for outage tests)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="seatbot-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """Our own redis-server unless REDIS_URL points at one (then outage tests skip)."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return os.environ.get("REDIS_URL") or (redis_server.url if redis_server else "")


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """A client on a flushed database: every test starts empty."""
    client = aredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The Cloudflare stand-in; afterwards every request it received is checked against the contract."""
    box = Sandbox()
    yield box
    if CF_SPEC.exists() and not request.node.get_closest_marker("no_contract"):
        from tests.contract import validate_request

        for recorded in box.requests:
            validate_request(recorded)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_contract: the test sends off-contract requests on purpose")


async def no_sleep(seconds: float) -> None:
    """Retries in tests never really wait."""


@pytest.fixture
async def cf(sandbox: Sandbox) -> AsyncIterator[CloudflareClient]:
    async with CloudflareClient(
        account_id=DEMO_ACCOUNT_ID,
        auth_headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        base_url=sandbox.base_url,
        transport=sandbox.transport(),
        sleep=no_sleep,
    ) as client:
        yield client


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bot(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> AsyncIterator[SlackClient]:
    """The real web app with a real Redis, the fake Slack and the sandbox Cloudflare."""
    client = build(slack, sandbox, redis_url)
    yield client
    await client.aclose()
