"""Shared fixtures: a real Redis server for the session, the Cloudflare stand-in, captured logs."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis

from bot.cloudflare.client import CloudflareClient
from bot.devtools.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack
from tests.support.flow import sandbox_client
from tests.support.harness import SlackClient, build
from tests.support.servers import CF_SPEC, RedisServer, clean_env


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings see nothing from the developer's shell (`clean_env`) nor a stray ./.env file."""
    kept = clean_env()
    for name in list(os.environ):
        if name not in kept:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


FOREIGN_REDIS = (
    "REDIS_URL is set in this shell: the test suite starts its own redis-server and never reads, "
    "writes or flushes a Redis it did not start. Run it without the variable: env -u REDIS_URL make test"
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The suite's own redis-server; every test's data goes there and nowhere else."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    """A client on a flushed database of the suite's own server: every test starts empty."""
    client = aredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The Cloudflare stand-in; afterwards every request it received is checked against the contract."""
    box = Sandbox()
    yield box
    from tests.support.contract import validate_request

    if CF_SPEC.exists() and not request.node.get_closest_marker("no_contract"):
        for recorded in box.requests:
            validate_request(recorded)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("REDIS_URL"):  # someone's Redis: refuse before any test could touch it
        raise pytest.UsageError(FOREIGN_REDIS)
    config.addinivalue_line("markers", "no_contract: the test sends off-contract requests on purpose")


SHARED_SKIP = (
    "checks against Cloudflare's OpenAPI and Slack's manifest schema: ../shared is absent "
    "(run them with the shared folder beside the checkout, as CI does)"
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skips said once per reason (pyproject's -r leaves them out): no line per test and file."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix("Skipped: ")
        reasons[SHARED_SKIP if "../shared" in reason else reason] += 1
    for reason, count in reasons.items():
        terminalreporter.write_line(f"SKIPPED {count} test{'' if count == 1 else 's'}: {reason}")


@pytest.fixture
async def cf(sandbox: Sandbox) -> AsyncIterator[CloudflareClient]:
    async with sandbox_client(sandbox) as client:
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
