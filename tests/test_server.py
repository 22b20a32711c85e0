"""`python -m bot serve` from outside over real sockets: slow clients, too many connections, huge bodies."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.slack.server import RateLimitedLines, connection_cap, limit_accept_errors
from tests.support.fake_slack import FakeSlack
from tests.support.harness import bot_env, build
from tests.support.servers import clean_env, free_port, wait_http

READ_TIMEOUT = 0.5
CAP = 8


def serve(
    tmp_path: Path, redis_url: str, *, nofile: int | None = None, **extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    settings = {
        "PORT": str(port),
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "REDIS_URL": redis_url,
        "CLOUDFLARE_BASE_URL": "http://127.0.0.1:9/client/v4",
        "SEATBOT_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
    }
    env = clean_env(**bot_env(**(settings | extra)))

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit_files,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    return proc, port


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[int]:
    proc, port = serve(tmp_path, redis_url, SEATBOT_MAX_CONNECTIONS=str(CAP))
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def closed_after(sock: socket.socket, trickle: bytes, *, every: float = 0.1, limit: float = 5.0) -> float:
    """Send `trickle` one byte at a time; seconds until the server closes the connection."""
    started = time.perf_counter()
    sock.settimeout(every)
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(4096) == b"":
                return time.perf_counter() - started
        except TimeoutError:
            continue
        except OSError:
            return time.perf_counter() - started
        if time.perf_counter() - started > limit:
            break
    raise AssertionError("the server kept a trickling connection open")


def test_slow_headers_are_cut_off(server: int) -> None:
    """Headers one byte per 100 ms: the connection is closed at the read deadline, not held."""
    with connect(server) as sock:
        took = closed_after(sock, b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200)
    assert READ_TIMEOUT <= took < READ_TIMEOUT + 0.5


def test_slow_body_is_cut_off(server: int) -> None:
    """A complete head, then a body one byte per 100 ms: cut off at the same deadline."""
    with connect(server) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        took = closed_after(sock, b"a" * 500)
    assert took < READ_TIMEOUT + 0.5


def test_kept_alive_connection_gets_the_same_deadline_for_its_next_request(server: int) -> None:
    """After one good request, trickling the next one's headers is cut off too."""
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        took = closed_after(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200)
    assert took < READ_TIMEOUT + 0.5


def test_connections_over_the_cap_get_503_and_the_server_recovers(server: int) -> None:
    """CAP idle connections fill the worker; the next gets 503 at once; after the deadline all is well."""
    idle = [connect(server) for _ in range(CAP)]
    time.sleep(0.05)
    try:
        with connect(server) as extra:
            extra.settimeout(2)
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    finally:
        time.sleep(READ_TIMEOUT + 0.2)  # the idle ones are closed by the deadline …
        for sock in idle:
            sock.close()
    with connect(server) as sock:  # … and new clients are served again
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_huge_declared_body_gets_413_without_being_sent(server: int) -> None:
    """100 MB announced, nothing sent: 413 straight away (nothing is read, nothing is logged)."""
    with connect(server) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        sock.settimeout(2)
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_descriptor_exhaustion_cannot_happen_and_logs_stay_small(tmp_path: Path, redis_url: str) -> None:
    """With `ulimit -n 512` and 700 connections the worker stays up, refuses the extras, logs little."""
    proc, port = serve(tmp_path, redis_url, nofile=512)
    try:
        socks = []
        for _ in range(700):
            try:
                socks.append(connect(port))
            except OSError:
                break
        time.sleep(0.3)
        for sock in socks:
            sock.close()
        time.sleep(READ_TIMEOUT)
        assert wait_http(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    log = err.decode()
    assert log.count("out of system resource") <= 1  # a burst may meet EMFILE once; said once
    assert "lowered to 256 per worker" in log
    assert log.count("connection refused") == 1  # the rest are counted, not printed
    assert len(log) < 20_000


def test_accept_error_lines_are_rate_limited() -> None:
    """asyncio's accept() failure is logged once per window, with a count of what was held back."""
    clock = [0.0]
    limiter = RateLimitedLines("socket.accept() out of system resource", every=10, clock=lambda: clock[0])
    logger = logging.getLogger("test.accept")
    logger.addFilter(limiter)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        for _ in range(10_000):
            logger.error("socket.accept() out of system resource")
        logger.error("something else")
        clock[0] = 11.0
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeFilter(limiter)
        logger.removeHandler(handler)
    assert seen[0] == "socket.accept() out of system resource"
    assert seen[1] == "something else"
    assert seen[2].endswith("(9999 more like this in the last 10 s)") and len(seen) == 3


async def test_limiter_is_on_asyncios_logger(caplog: pytest.LogCaptureFixture) -> None:
    """The filter sits on the logger asyncio's loop uses for this message."""
    limit_accept_errors()
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.ERROR, logger="asyncio")
    for _ in range(500):
        loop.call_exception_handler(
            {
                "message": "socket.accept() out of system resource",
                "exception": OSError(24, "Too many open files"),
            }
        )
    assert caplog.text.count("out of system resource") <= 1


def test_connection_cap_fits_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(10**9) <= soft


async def test_serving_puts_the_start_up_heap_out_of_the_collectors_reach(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Once the app's lifespan has started, start-up objects are frozen, so full collections stay short."""
    client = build(slack, sandbox, redis_url)
    app = client.app
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        await client.http.aclose()
