"""`python -m bot check` reads the Redis it is pointed at: its version, eviction policy and AOF.
A Redis that may evict keys is a WARN (open cards, claims and schedules would vanish without a word);
one older than 6.2 (no GETDEL) a FAIL."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from bot.config import Settings
from bot.errors import SeatbotError
from bot.ops.check import Warn, redis_fitness, run_checks
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture
def evicting_redis() -> Iterator[str]:
    """A private redis-server with maxmemory-policy allkeys-lru (what a cache-tuned Redis has)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def redis_line(url: str) -> str:
    lines: list[str] = []
    await run_checks(Settings(_env_file=None, redis_url=url), out=lines.append, seconds=3)
    (line,) = [line for line in lines if line.split(":")[0].split()[-1] == "redis"]
    return line


async def test_check_warns_when_redis_may_evict(evicting_redis: str, redis_url: str) -> None:
    line = await redis_line(evicting_redis)
    assert line.startswith("WARN redis: PING ok at 127.0.0.1:")
    assert "maxmemory-policy allkeys-lru" in line and "set maxmemory-policy noeviction" in line
    good = await redis_line(redis_url)  # the suite's own server: noeviction, the default
    assert good.startswith("OK   redis: PING ok at ") and "maxmemory-policy noeviction, AOF off)" in good


def test_redis_older_than_6_2_fails_and_aof_is_reported() -> None:
    with pytest.raises(SeatbotError, match=r"Redis 6\.0\.16 is too old: the bot needs 6\.2 or newer"):
        redis_fitness("PING ok", {"redis_version": "6.0.16", "maxmemory_policy": "noeviction"})
    info = {"redis_version": "7.2.4", "maxmemory_policy": "noeviction", "aof_enabled": 1}
    assert redis_fitness("PING ok", info) == "PING ok (Redis 7.2.4, maxmemory-policy noeviction, AOF on)"
    with pytest.raises(Warn):
        redis_fitness("PING ok", {**info, "maxmemory_policy": "volatile-lru"})
    assert redis_fitness("PING ok", None) == "PING ok"  # INFO denied: PING is all there is to say
