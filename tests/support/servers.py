"""Real processes for tests and the bench: a private redis-server, free ports, a clean environment."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis


def _shared() -> Path:
    """`../shared` beside the checkout; a git worktree deeper down finds the same one further up.

    SEATBOT_TEST_SHARED overrides it (the test of a plain clone points it at a missing folder)."""
    if override := os.environ.get("SEATBOT_TEST_SHARED"):
        return Path(override)
    checkout = Path(__file__).resolve().parents[2]
    for parent in checkout.parents:
        if (parent / "shared" / "cloudflare").is_dir():
            return parent / "shared"
    return checkout.parent / "shared"


SHARED = _shared()
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


SETTING_PREFIXES = ("SLACK_", "CLOUDFLARE_", "SEATBOT_", "REDIS_")


def clean_env(**values: str) -> dict[str, str]:
    """The parent's environment without any seatbot setting (or PORT, PYTEST_ADDOPTS), plus `values`.

    For child processes directly; the `isolated_env` fixture applies it to the test's own process.
    """
    skip = ("PORT", "PYTEST_ADDOPTS")  # a nested pytest run must not take the caller's options
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTING_PREFIXES)}
    env = {k: v for k, v in env.items() if k not in skip}
    env.update(values)
    return env


def run_bot(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m bot <args>` as a deployer runs it: only `env` on top of a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        cwd=cwd,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_http(
    url: str, *, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> httpx.Response:
    """Poll `url` until it answers below 500 (or `proc` exits, or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up")
        time.sleep(0.1)


async def no_sleep(seconds: float) -> None:
    """Retries in tests never really wait."""


@contextmanager
def sandbox_process(cwd: Path) -> Iterator[int]:
    """`python -m bot sandbox` on a free port (the demo account over real HTTP); yields the port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--port", str(port)],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/client/v4/accounts/x/access/users", proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
