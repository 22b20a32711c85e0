"""From outside, as a deployer: the Procfile's web line with env vars, real ports, two workers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.slack.wiring import build_slack
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    BOT_TOKEN,
    SIGNING_SECRET,
    action_body,
    bot_env,
    button,
    command_body,
    settings_for,
    sign,
    stack_env,
)
from tests.support.servers import clean_env, free_port, run_bot, wait_http

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--port", str(port)],
        cwd=tmp_path,
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


async def test_procfile_web_line_serves_a_full_revoke(
    tmp_path: Path, slack: FakeSlack, sandbox_port: int, redis_url: str, redis_client: object
) -> None:
    """`python -m bot serve` with env vars and 2 workers: healthz, signed command, click, outcome."""
    port = free_port()
    env = clean_env(
        **stack_env(
            slack_api_url=slack.api_url,
            redis_url=redis_url,
            cf_port=sandbox_port,
            PORT=str(port),
            WEB_CONCURRENCY="2",
        )
    )
    web_line = (ROOT / "Procfile").read_text().splitlines()[0].split(":", 1)[1].split()
    proc = subprocess.Popen(
        [sys.executable if w == "python" else w for w in web_line],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        health = await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc=proc)
        assert health.status_code == 200 and health.json()["redis"] == "ok"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            url = slack.response_url
            body = command_body(
                "revoke alice@example.com --reason e2e", user=ADMIN, channel="C1", response_url=url("e2e")
            )
            response = await http.post("/slack/events", content=body, headers=sign(body))
            assert response.status_code == 200
            (card,) = await slack.wait_responses("e2e", 1, timeout=10)
            value = button(card, "seat_confirm")["value"]
            click = action_body(
                "seat_confirm", value, user=ADMIN, channel="C1", response_url=url("e2e-click")
            )
            response = await http.post("/slack/events", content=click, headers=sign(click))
            assert response.status_code == 200
            posts = await slack.wait_responses("e2e-click", 3, timeout=10)
            assert "access ✗ / gateway ✗" in posts[1]["text"] + str(posts[1]["blocks"])
            forged = await http.post("/slack/events", content=body, headers=sign(body, secret="wrong"))
            assert forged.status_code == 401
        async with httpx.AsyncClient() as http:
            users = await http.get(
                f"http://127.0.0.1:{sandbox_port}/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/users",
                params={"email": "alice@example.com"},
                headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
            )
        alice = next(u for u in users.json()["result"] if u["email"] == "alice@example.com")
        assert alice["access_seat"] is False and alice["gateway_seat"] is False
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    logs = err.decode()
    assert SIGNING_SECRET not in logs and BOT_TOKEN not in logs and DEMO_TOKEN not in logs
    assert '"logger": "seatbot.cloudflare"' in logs  # JSON lines were written


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CLOUDFLARE_ACCOUNT_ID": "x" * 40}, "CLOUDFLARE_ACCOUNT_ID"),
        ({"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET"),
        ({"CLOUDFLARE_API_TOKEN": ""}, "CLOUDFLARE_API_TOKEN"),
        ({"SEATBOT_CONFIRM_TTL_SECONDS": "3600"}, "SEATBOT_CONFIRM_TTL_SECONDS"),
        ({"WEB_CONCURRENCY": "2"}, "REDIS_URL"),
        # Slack IDs (issue 16 §2): each of these used to start, and then every command was refused.
        ({"SEATBOT_ADMINS": "alice@example.com"}, "SEATBOT_ADMINS: `alice@example.com` is an email"),
        ({"SEATBOT_ADMINS": "u0abc"}, "SEATBOT_ADMINS: `u0abc` must be in capitals"),
        ({"SEATBOT_ADMINS": "<@U0ABC>"}, "SEATBOT_ADMINS: `<@U0ABC>` is a mention"),
        ({"SEATBOT_CHANNELS": "#it-offboarding"}, "SEATBOT_CHANNELS: `#it-offboarding` is a channel name"),
    ],
)
def test_bad_settings_stop_startup_with_one_line(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    """A missing or malformed setting: exit 2 and one line naming the variable, no traceback."""
    base = bot_env(**{"PORT": str(free_port()), **env})
    result = run_bot("serve", cwd=tmp_path, timeout=30, env=base)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert SIGNING_SECRET not in result.stderr and DEMO_TOKEN not in result.stderr


async def test_check_command_reports_each_part(
    tmp_path: Path, slack: FakeSlack, sandbox_port: int, redis_url: str
) -> None:
    """`python -m bot check`: one OK line per part (settings, Slack, Cloudflare, Redis); FAIL names it."""
    env = stack_env(slack_api_url=slack.api_url, redis_url=redis_url, cf_port=sandbox_port)

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return run_bot("check", cwd=tmp_path, env={**env, **extra})

    good = await asyncio.to_thread(run)
    assert good.returncode == 0, good.stdout + good.stderr
    assert [line.split(":")[0] for line in good.stdout.splitlines()] == [
        "OK   config",
        "OK   slack",
        "OK   cloudflare",
        "OK   redis",
        "OK   directory",
        "WARN jobs",  # nothing runs the jobs while only `check` runs (a warning, exit code 0)
    ]
    directory = good.stdout.splitlines()[-2]
    assert directory.startswith(("OK   directory: empty: ", "OK   directory: ready: ")), directory
    bad = await asyncio.to_thread(
        run, CLOUDFLARE_API_TOKEN="wrong-token-123", REDIS_URL="redis://127.0.0.1:1/0"
    )
    assert bad.returncode == 1
    assert "FAIL cloudflare: 10000: Authentication error" in bad.stdout
    assert "FAIL redis" in bad.stdout and "wrong-token-123" not in bad.stdout + bad.stderr


async def test_socket_mode_app_serves_the_same_flow(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: object
) -> None:
    """The Socket Mode worker's Bolt app (no signatures) answers a command and a click like HTTP does."""
    settings = settings_for(slack, sandbox, redis_url, slack_app_token="xapp-test-app-token")
    runtime, app = build_slack(settings, verify_signatures=False, seats_transport=sandbox.transport())
    try:
        body = dict(
            parse_qsl(
                command_body(
                    "revoke alice@example.com",
                    user=ADMIN,
                    channel="C1",
                    response_url=slack.response_url("sock"),
                )
            )
        )
        response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
        assert response.status == 200
        (card,) = await slack.wait_responses("sock", 1)
        value = button(card, "seat_confirm")["value"]
        click = action_body(
            "seat_confirm", value, user=ADMIN, channel="C1", response_url=slack.response_url("sk")
        )
        payload = json.loads(dict(parse_qsl(click))["payload"])
        response = await app.async_dispatch(AsyncBoltRequest(body=payload, mode="socket_mode"))
        assert response.status == 200
        posts = await slack.wait_responses("sk", 3)
        assert "access ✗ / gateway ✗" in json.dumps(posts[1], ensure_ascii=False)
        assert len(sandbox.patches) == 1
    finally:
        await runtime.aclose()
