"""The test suite never touches a Redis it did not start (it used to flush REDIS_URL's database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from tests.conftest import FOREIGN_REDIS
from tests.support.servers import RedisServer, clean_env

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_with_redis_url_set_refuses_and_leaves_that_redis_alone() -> None:
    """`REDIS_URL=… make test`: pytest stops before any test, says why, and the data is still there."""
    theirs = RedisServer()
    theirs.start()
    try:
        client = redis.Redis(port=theirs.port)
        client.set("someone:else", "precious")
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/test_format_version.py"],
            cwd=ROOT,
            env=clean_env(REDIS_URL=theirs.url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 4, run.stdout + run.stderr  # pytest's usage error: nothing ran
        assert FOREIGN_REDIS in run.stderr
        assert client.get("someone:else") == b"precious" and client.dbsize() == 1
        client.close()
    finally:
        theirs.stop()
