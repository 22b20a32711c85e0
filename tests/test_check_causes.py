"""`python -m bot check` names the real cause (issue 21 item 7): a Slack URL that is no Slack API, a
Cloudflare base URL that is no Cloudflare API, a Redis database that does not exist, a missing Redis
password, a Redis unix socket shown by its path. Run as a deployer would, against a private
redis-server with a password and a socket, and a local server answering plain-text 404s."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support import servers
from tests.support.harness import ADMIN, BOT_TOKEN
from tests.support.servers import free_port

PASSWORD = "check-causes-password"


@pytest.fixture
def not_found() -> Iterator[str]:
    """A web server answering every request with a plain-text 404 (a wrong path on some proxy)."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = b"404 page not found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def locked_redis() -> Iterator[tuple[int, str]]:
    """A private redis-server that requires a password, on a port and a unix socket."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
    folder, port = tempfile.mkdtemp(prefix="seatbot-check-"), free_port()
    sock = f"{folder}/redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", folder, "--unixsocket", sock, "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=PASSWORD)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
    client.close()
    yield port, sock
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def check(tmp_path: Path, **env: str) -> dict[str, str]:
    result = servers.run_bot("check", cwd=tmp_path, env={"SEATBOT_ADMINS": ADMIN, **env}, stdin="")
    return {line[5:].split(":", 1)[0]: line for line in result.stdout.splitlines()}


def test_wrong_addresses_are_named_as_such(
    tmp_path: Path, not_found: str, locked_redis: tuple[int, str]
) -> None:
    """A plain-text 404 is a wrong SLACK_API_URL or CLOUDFLARE_BASE_URL (not an AttributeError, not the
    account ID); a password-protected Redis with none in REDIS_URL says the password is missing."""
    port, _ = locked_redis
    found = check(
        tmp_path,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=f"{not_found}/api/",
        CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
        CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
        CLOUDFLARE_BASE_URL=f"{not_found}/client/v4",
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    slack, cloudflare, redis_line = found["slack"], found["cloudflare"], found["redis"]
    assert slack.startswith("FAIL slack:") and "HTTP 404 that is not Slack's API" in slack, slack
    assert "check SLACK_API_URL" in slack and "AttributeError" not in slack
    assert "answered HTTP 404 with no Cloudflare account error" in cloudflare, cloudflare
    assert "check CLOUDFLARE_BASE_URL" in cloudflare and "CLOUDFLARE_ACCOUNT_ID" not in cloudflare
    assert f"127.0.0.1:{port} requires a password and REDIS_URL has none" in redis_line, redis_line
    assert "refused the password" not in redis_line


def test_a_missing_database_and_a_socket_path_are_named(
    tmp_path: Path, locked_redis: tuple[int, str]
) -> None:
    """Database 99 is said not to exist (not "cannot reach"); a unix socket is shown by its path."""
    port, sock = locked_redis
    missing = check(tmp_path, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/99")["redis"]
    assert f"FAIL redis: 127.0.0.1:{port} has no database 99" in missing, missing
    assert "cannot reach" not in missing and PASSWORD not in missing
    ok = check(tmp_path, REDIS_URL=f"unix://{sock}?password={PASSWORD}")["redis"]
    assert ok.startswith(f"OK   redis: PING ok at socket {sock}"), ok
    assert "[redacted]" not in ok and PASSWORD not in ok
