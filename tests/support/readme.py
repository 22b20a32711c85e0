"""The README's samples, made from real runs: `make readme` writes them, tests/test_readme.py compares.

Each sample sits in README.md between `<!-- sample:NAME -->` and `<!-- /sample -->`. Shell samples
are piped into `python -m bot shell` exactly as the README tells a newcomer to do; the /healthz
sample asks the real web app. Only times and cf-ray ids may differ between two runs (`masked`).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.servers import RedisServer, clean_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REGENERATE = "make readme"
_BLOCK = re.compile(r"(<!-- sample:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /sample -->)", re.S)
_MASKS = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<timestamp>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"), "<time>"),
    (re.compile(r"\b[0-9a-f]{16}-[A-Z]{3}\b"), "<cf-ray>"),
)


@dataclass(frozen=True)
class Session:
    """Input piped into `python -m bot <args>`, with these settings."""

    script: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ("shell",)  # () is `make run`: the shell, with its line on going live
    banner: bool = False  # keep the shell's opening lines in the sample


SESSIONS: dict[str, Session] = {
    "revoke": Session(
        "/seat revoke alice@example.com <@U0BOB> --reason offboarding, ticket IT-4211\n1\ny\n"
        "/seat revoke alice@example.com\n",
        args=(),
        banner=True,
    ),
    "non-admin": Session(
        "/as U0MALLORY\n/seat revoke alice@example.com\n/as U0SHELL\n/seat status @alice\n"
        "/seat revoke --reason left dave@example.com\n2\n/seat audit 3\n"
    ),
    "two-person": Session(
        "/seat revoke carol@example.com --reason contract ended\n1\ny\n/as U0DANA\n1\ny\n",
        env={"SEATBOT_TWO_PERSON": "true", "SEATBOT_ADMINS": "U0DANA"},
    ),
}


def shell_transcript(session: Session) -> str:
    """What a newcomer sees piping `session.script` into `python -m bot` (what `make run` runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "bot", *session.args],
            input=session.script,
            cwd=tmp,
            env=clean_env(**session.env),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    out = result.stdout
    if not session.banner:
        out = out[out.index("\n> ") + 1 :]
    return out


def healthz_transcript() -> str:
    """GET /healthz and /readyz from the real app: in-process store, a reachable Redis, an unreachable one."""
    from bot.config import Settings
    from bot.slack.web import build_app

    async def ask(redis_url: str | None) -> str:
        settings = Settings(
            _env_file=None,
            slack_signing_secret="readme-signing-secret",
            slack_bot_token="xoxb-readme",
            cloudflare_account_id="0123456789abcdef0123456789abcdef",
            cloudflare_api_token="readme-token",
            redis_url=redis_url,
        )
        app = build_app(settings)
        lines = []
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bot") as http:
                for path in ("/healthz", "/readyz"):
                    response = await http.get(path)
                    lines.append(f"{path:9}{response.status_code} {json.dumps(response.json())}")
        finally:
            await app.state.runtime.aclose()
        return f"\n{'':23}".join(lines)

    server = RedisServer()
    server.start()
    try:
        lines = [
            f"REDIS_URL unset:       {asyncio.run(ask(None))}",
            f"Redis reachable:       {asyncio.run(ask(server.url))}",
            f"Redis down:            {asyncio.run(ask('redis://127.0.0.1:1/0'))}",
        ]
    finally:
        server.stop()
    return "\n".join(lines) + "\n"


def startup_transcript() -> str:
    """The start-up line `serve` logs, for a typical production set-up."""
    from bot.config import Settings
    from bot.ops.startup import describe

    settings = Settings(  # a deployment: two workers, managed Redis with a password, one admin group
        _env_file=None,
        redis_url="rediss://:secret@redis.internal:6380/0",
        web_concurrency=2,
        cloudflare_account_id="0123456789abcdef0123456789abcdef",
        seatbot_admins=("U024BE7LH", "U0G9QF9C6"),
        seatbot_admin_groups=("S0614TZR7",),
    )
    return describe(settings, mode="http") + "\n"


def check_transcript() -> str:
    """`python -m bot check` with every service pointing where nothing listens."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "bot", "check"],
            cwd=tmp,
            env=clean_env(
                SLACK_BOT_TOKEN="xoxb-not-a-real-token",
                SLACK_API_URL="http://127.0.0.1:1/api/",
                CLOUDFLARE_ACCOUNT_ID="0123456789abcdef0123456789abcdef",
                CLOUDFLARE_API_TOKEN="not-a-real-token",
                CLOUDFLARE_BASE_URL="http://127.0.0.1:1/client/v4",
                REDIS_URL="redis://127.0.0.1:1/0",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    return "$ python -m bot check\n" + result.stdout


GENERATED = {"healthz": healthz_transcript, "startup": startup_transcript, "check": check_transcript}


def generate(name: str) -> str:
    return GENERATED[name]() if name in GENERATED else shell_transcript(SESSIONS[name])


def samples(text: str) -> dict[str, str]:
    """The README's samples by name (the text inside the ``` fence)."""
    return {m["name"]: _unfence(m["body"]) for m in _BLOCK.finditer(text)}


def masked(text: str) -> str:
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return text


def _unfence(body: str) -> str:
    lines = body.splitlines(keepends=True)
    return "".join(lines[1:-1]) if lines and lines[0].startswith("```") else body


def write() -> list[str]:
    """Regenerate every sample in README.md; returns the names written."""
    text = README.read_text()
    names = list(samples(text))

    def fill(m: re.Match[str]) -> str:
        fresh = generate(m["name"])
        if masked(fresh) == masked(_unfence(m["body"])):
            return m[0]  # only times differ: keep the block, so branches do not conflict over clocks
        return f"{m[1]}```\n{fresh}```\n{m[4]}"

    README.write_text(_BLOCK.sub(fill, text))
    return names


if __name__ == "__main__":
    print("README samples regenerated:", ", ".join(write()))
