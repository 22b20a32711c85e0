"""Starting the bot as a deployer does (issue 11, items 10-12, 15): Procfile, start-up line, .env.example."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support.fake_slack import FakeSlack
from tests.support.harness import BOT_TOKEN, bot_env
from tests.support.servers import clean_env, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]


def procfile() -> dict[str, list[str]]:
    """Process types as a Procfile runner (honcho, heroku local) reads them: `name: command`."""
    types = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            types[name.strip()] = [sys.executable if w == "python" else w for w in command.split()]
    return types


def start_all(tmp_path: Path, env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    """Every process type at once, the way `honcho start` runs a Procfile."""
    return {
        name: subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, command in procfile().items()
    }


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, str]:
    logs = {}
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=15)
        logs[name] = err.decode()
    return logs


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def http_env(port: int, **extra: str) -> dict[str, str]:
    return clean_env(**bot_env(PORT=str(port), CLOUDFLARE_BASE_URL="http://127.0.0.1:9/client/v4", **extra))


# -- item 11: one start-up line --------------------------------------------------------------------


def test_serve_logs_one_start_up_line_and_no_bolt_token_warning(tmp_path: Path, redis_url: str) -> None:
    """Mode and port, Redis, Cloudflare account and admins in one line; Bolt's token warning is gone."""
    port = free_port()
    env = http_env(port, REDIS_URL=redis_url, SEATBOT_ADMINS="U1,U2", SEATBOT_ADMIN_GROUPS="S1")
    procs = start_all(tmp_path, env)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs["web"])
    logs = stop_all(procs)["web"]
    started = [line for line in json_lines(logs) if line["logger"] == "seatbot.startup"]
    assert len(started) == 1, logs
    msg = str(started[0]["msg"])
    assert f"Slack over HTTP on 0.0.0.0:{port}" in msg and "1 worker" in msg
    assert (
        f"Redis: {redis_url.removeprefix('redis://').replace('/', ' db ')}" in msg
        and f"Cloudflare account {DEMO_ACCOUNT_ID}" in msg
    )
    assert "2 admins, 1 admin group" in msg
    assert "will be unused" not in logs and "no admins configured" not in logs


def test_serve_warns_at_start_when_no_admin_is_configured(tmp_path: Path) -> None:
    """No SEATBOT_ADMINS / SEATBOT_ADMIN_GROUPS: a warning at start, not a surprise at the first command."""
    port = free_port()
    procs = start_all(tmp_path, http_env(port))
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs["web"])
    logs = stop_all(procs)["web"]
    (warning,) = [
        line
        for line in json_lines(logs)
        if line["logger"] == "seatbot.startup" and line["level"] == "warning"
    ]
    assert "no admins configured" in str(warning["msg"]) and "SEATBOT_ADMINS" in str(warning["msg"])
    assert "in-process store" in logs and "0 admins" in logs


# -- item 12: the Procfile runs as a whole ---------------------------------------------------------


def test_procfile_as_a_whole_serves_http(tmp_path: Path) -> None:
    """`honcho start` with an HTTP set-up: every process type stays up and /healthz answers."""
    port = free_port()
    procs = start_all(tmp_path, http_env(port))
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs["web"]).status_code == 200
        time.sleep(1)
        assert {name: proc.poll() for name, proc in procs.items()} == dict.fromkeys(procs)
    finally:
        stop_all(procs)


async def test_procfile_as_a_whole_runs_socket_mode(tmp_path: Path, slack: FakeSlack) -> None:
    """With SLACK_APP_TOKEN (and no signing secret) the same Procfile runs Socket Mode, nothing exits."""
    env = clean_env(
        SLACK_APP_TOKEN="xapp-1-test",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=slack.api_url,
        CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
        CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
        SEATBOT_ADMINS="U1",
    )
    procs = start_all(tmp_path, env)
    try:
        await slack.wait_for(lambda: "apps.connections.open" in slack.methods(), timeout=20)
        await asyncio.sleep(1)
        assert {name: proc.poll() for name, proc in procs.items()} == dict.fromkeys(procs)
    finally:
        logs = "".join(stop_all(procs).values())
    assert "Slack over Socket Mode" in logs and "SLACK_SIGNING_SECRET" not in logs


# -- item 10: .env.example -------------------------------------------------------------------------


def test_copied_env_example_keeps_the_shell_on_its_own_store(tmp_path: Path) -> None:
    """`cp .env.example .env && make run` must not move the shell onto whatever Redis is on 6379."""
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        cwd=tmp_path,
        env=clean_env(),
        input="/seat help\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Store: in-process" in result.stdout
    values = [line for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line]
    assert all(line.startswith("#") or line.endswith("=") for line in values), (
        "a copied template sets nothing"
    )


# -- item 15: a plain clone ------------------------------------------------------------------------


def test_plain_clone_says_once_what_is_skipped(tmp_path: Path) -> None:
    """Without ../shared: one line says what is skipped and how to run it; no SKIPPED line per test."""
    # the caller's PYTEST_ADDOPTS (`-rs` adds a line per skip) must not change what the nested run prints
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["SEATBOT_TEST_SHARED"] = str(tmp_path / "absent")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/test_contract.py",
            "tests/test_manifest.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    skip_lines = [line for line in result.stdout.splitlines() if "SKIPPED" in line]
    assert len(skip_lines) == 1, result.stdout
    assert "../shared is absent" in skip_lines[0] and "as CI does" in skip_lines[0]
    assert re.match(r"SKIPPED [0-9]+ tests: ", skip_lines[0])


def test_license_is_an_spdx_string() -> None:
    """`project.license` in the current form (a string), with a setuptools that reads it."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools == "setuptools>=77"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_removes_hypothesis_and_egg_info(tmp_path: Path) -> None:
    """`make clean` leaves no .hypothesis/ or *.egg-info behind."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in (".hypothesis", "seatbot.egg-info", ".pytest_cache"):
        (tmp_path / name).mkdir()
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)  # noqa: S607
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile"]
