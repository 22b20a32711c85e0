"""`python -m bot check` and bad settings, run as a deployer would (issue 11, items 6-9)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support import servers
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, BOT_TOKEN, bot_env
from tests.support.servers import free_port


def run_bot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return servers.run_bot(*args, cwd=tmp_path, env=env, stdin="")  # stdin at its end: nothing to read


def lines(text: str) -> dict[str, str]:
    """`check`'s output by part: {"slack": "FAIL slack: …"}."""
    found = {}
    for line in text.splitlines():
        part = line[5:].split(":", 1)[0]
        found[part] = line
    return found


@pytest.fixture
def busy_cloudflare() -> Iterator[tuple[str, list[str]]]:
    """A Cloudflare that answers every request 503 (retryable); yields its base URL and the paths hit."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"success": false, "errors": [{"code": 10503, "message": "busy"}]}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/client/v4", hits
    server.shutdown()
    server.server_close()


async def test_check_shows_slacks_error_string_and_what_to_do(tmp_path: Path, slack: FakeSlack) -> None:
    """A rejected bot token shows Slack's own `invalid_auth`, not `SlackApiError`, and where to get one."""
    slack.token_error = "invalid_auth"
    result = await asyncio.to_thread(
        run_bot, tmp_path, "check", SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url
    )
    line = lines(result.stdout)["slack"]
    assert line.startswith("FAIL slack: Slack answered invalid_auth to auth.test")
    assert "OAuth & Permissions" in line and "SlackApiError" not in line


def test_check_names_the_host_and_port_that_failed(tmp_path: Path) -> None:
    """Unreachable Slack, Cloudflare and Redis each name their host:port and the kind of failure."""
    closed = free_port()
    result = run_bot(
        tmp_path,
        "check",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=f"http://127.0.0.1:{closed}/api/",
        CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
        CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
        CLOUDFLARE_BASE_URL="http://seatbot-no-such-host.invalid/client/v4",
        REDIS_URL=f"redis://127.0.0.1:{closed}/0",
    )
    found = lines(result.stdout)
    assert result.returncode == 1
    assert f"FAIL slack: cannot reach 127.0.0.1:{closed}: connection refused" in found["slack"]
    assert "seatbot-no-such-host.invalid:80: host name not found (DNS)" in found["cloudflare"]
    assert "CLOUDFLARE_BASE_URL" in found["cloudflare"]
    assert f"FAIL redis: cannot reach 127.0.0.1:{closed}: connection refused" in found["redis"]
    assert "REDIS_URL" in found["redis"] and "Error" not in found["redis"].split(":")[1]


async def test_check_passes_a_socket_mode_setup_without_signing_secret(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """SLACK_APP_TOKEN + SLACK_BOT_TOKEN + admins is complete: no signing secret asked for."""
    result = await asyncio.to_thread(
        run_bot,
        tmp_path,
        "check",
        SLACK_APP_TOKEN="xapp-1-test",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=slack.api_url,
        CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
        CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
        SEATBOT_ADMINS=ADMIN,
    )
    found = lines(result.stdout)
    assert found["config"].startswith("OK   config: settings complete for Socket Mode"), result.stdout
    assert found["slack"].startswith("OK   slack:") and "opens Socket Mode" in found["slack"]
    assert "apps.connections.open" in slack.methods()


def test_check_names_every_missing_setting(tmp_path: Path) -> None:
    """Nothing set: the config line names all of them, not just the first."""
    config = lines(run_bot(tmp_path, "check").stdout)["config"]
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "CLOUDFLARE_ACCOUNT_ID",
        "CLOUDFLARE_API_TOKEN",
        "SEATBOT_ADMINS",
    ):
        assert name in config, config


def test_check_tries_cloudflare_once_and_prints_only_its_own_lines(
    tmp_path: Path, busy_cloudflare: tuple[str, list[str]]
) -> None:
    """A failing Cloudflare is asked once (no retry budget), answered fast, with no JSON log lines."""
    base_url, hits = busy_cloudflare
    started = time.monotonic()
    result = run_bot(
        tmp_path,
        "check",
        CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
        CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
        CLOUDFLARE_BASE_URL=base_url,
        SEATBOT_LOG_LEVEL="INFO",
    )
    elapsed = time.monotonic() - started
    assert len(hits) == 1 and elapsed < 5
    assert "FAIL cloudflare: 10503: busy" in result.stdout
    assert len(result.stdout.splitlines()) == 6 and result.stderr == ""  # config … directory, jobs


@pytest.mark.parametrize("command", ["serve", "check", "shell"])
@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("REDIS_URL", "http://x", "REDIS_URL: must start with redis://"),
        ("SEATBOT_LOG_LEVEL", "LOUD", "SEATBOT_LOG_LEVEL: must be one of DEBUG, INFO"),
        ("CLOUDFLARE_BASE_URL", "api.cloudflare.com", "CLOUDFLARE_BASE_URL: must be an http"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, command: str, name: str, value: str, needle: str
) -> None:
    """Exit 2 and one line on stderr naming the variable, for every command: never a traceback."""
    env = bot_env(**{"PORT": str(free_port()), name: value})
    result = run_bot(tmp_path, command, **env)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert needle in line and "Traceback" not in result.stderr


def test_every_bad_setting_is_named_in_the_one_line(tmp_path: Path) -> None:
    """Two bad settings at once: both are named, still in one line."""
    result = run_bot(tmp_path, "check", REDIS_URL="http://x", SEATBOT_LOG_LEVEL="LOUD")
    (line,) = result.stderr.splitlines()
    assert "REDIS_URL" in line and "SEATBOT_LOG_LEVEL" in line and result.returncode == 2


@pytest.mark.parametrize(
    ("command", "env", "names"),
    [
        (
            "serve",
            {},
            ["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN"],
        ),
        (
            "start",
            {"SLACK_APP_TOKEN": "xapp-1"},
            ["SLACK_BOT_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN"],
        ),
    ],
)
def test_starting_names_every_missing_setting(
    tmp_path: Path, command: str, env: dict[str, str], names: list[str]
) -> None:
    """serve/start with settings missing: one line naming all of them (Socket Mode: no signing secret)."""
    result = run_bot(tmp_path, command, **env)
    (line,) = result.stderr.splitlines()
    assert result.returncode == 2 and all(name in line for name in names), line
    assert ("SLACK_SIGNING_SECRET" in line) == (command == "serve")


def test_a_taken_port_or_unknown_host_is_named(tmp_path: Path) -> None:
    """PORT already in use, or a HOST that does not resolve: one line naming it, not `[Errno 98]`."""
    base = bot_env()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - where the bot listens by default
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_bot(tmp_path, "serve", PORT=port, **base)
    (line,) = busy.stderr.splitlines()
    assert busy.returncode == 2 and line.endswith(f"PORT: 0.0.0.0:{port} already in use")
    nowhere = run_bot(tmp_path, "serve", PORT=str(free_port()), HOST="seatbot-no-such-host.invalid", **base)
    (line,) = nowhere.stderr.splitlines()
    assert nowhere.returncode == 2 and "HOST: seatbot-no-such-host.invalid is not an address" in line
