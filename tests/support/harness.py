"""Drive the real Starlette app the way Slack does: signed slash commands and block_actions."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette

from bot.config import Settings
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.slack.web import build_app
from tests.support.fake_slack import FakeSlack

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-bot-token-0123456789"
ADMIN = "UADMIN1"
ADMIN2 = "UADMIN2"
OUTSIDER = "UOUTSIDER"
CHANNEL = "C0OPS"
ALICE = "alice@example.com"
_keys = itertools.count(1)


def settings_for(slack: FakeSlack, sandbox: Sandbox, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_signing_secret": SIGNING_SECRET,
        "slack_bot_token": BOT_TOKEN,
        "slack_api_url": slack.api_url,
        "redis_url": redis_url,
        "cloudflare_account_id": DEMO_ACCOUNT_ID,
        "cloudflare_api_token": DEMO_TOKEN,
        "cloudflare_base_url": sandbox.base_url,
        "seatbot_admins": (ADMIN, ADMIN2),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def bot_env(**extra: str) -> dict[str, str]:
    """The settings `python -m bot` cannot start without (Slack's, the demo Cloudflare account's) as
    environment variables, plus `extra` (which may override them)."""
    return {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": DEMO_ACCOUNT_ID,
        "CLOUDFLARE_API_TOKEN": DEMO_TOKEN,
        **extra,
    }


def stack_env(*, slack_api_url: str, redis_url: str, cf_port: int, **extra: str) -> dict[str, str]:
    """bot_env pointed at a fake Slack, a Redis and a sandbox on `cf_port`, with ADMIN allowed."""
    return bot_env(
        **{
            "SLACK_API_URL": slack_api_url,
            "REDIS_URL": redis_url,
            "CLOUDFLARE_BASE_URL": f"http://127.0.0.1:{cf_port}/client/v4",
            "SEATBOT_ADMINS": ADMIN,
            **extra,
        }
    )


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


class SlackClient:
    """One Slack workspace talking to one app instance (several instances can share a FakeSlack)."""

    def __init__(self, app: Starlette, slack: FakeSlack) -> None:
        self.app = app
        self.slack = slack
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot.test")

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.app.state.runtime.aclose()

    async def post(self, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post("/slack/events", content=body, headers=headers or sign(body))

    def command_body_for_test(self, text: str, *, user: str = ADMIN, channel: str = CHANNEL) -> str:
        return command_body(text, user=user, channel=channel, response_url=self.slack.response_url("unused"))

    async def command(
        self, text: str, *, user: str = ADMIN, channel: str = CHANNEL
    ) -> tuple[httpx.Response, str]:
        """Send `/seat <text>`; returns the HTTP response and the response_url key to watch."""
        key = f"cmd{next(_keys)}"
        body = command_body(text, user=user, channel=channel, response_url=self.slack.response_url(key))
        return await self.post(body), key

    async def click(
        self, action_id: str, value: str, *, user: str = ADMIN, channel: str = CHANNEL
    ) -> tuple[httpx.Response, str]:
        key = f"act{next(_keys)}"
        body = action_body(
            action_id, value, user=user, channel=channel, response_url=self.slack.response_url(key)
        )
        return await self.post(body), key


def command_body(text: str, *, user: str, channel: str, response_url: str, **fields: str) -> str:
    """A slash command as Slack posts it (form-encoded); `fields` override any other field."""
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": "T1",
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": "ops",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/seat",
            "text": text,
            "api_app_id": "A1",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
        | fields
    )


def action_body(action_id: str, value: str, *, user: str, channel: str, response_url: str) -> str:
    """A block_actions button click as Slack posts it (`payload=` JSON, form-encoded)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": "1.1",
            "channel_id": channel,
            "is_ephemeral": True,
        },
        "trigger_id": "1.2.3",
        "team": {"id": "T1", "domain": "test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "ops"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "seat_actions",
                "text": {"type": "plain_text", "text": "x"},
                "value": value,
                "type": "button",
                "action_ts": "1.2",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def home_opened_body(user: str, *, event_id: str) -> str:
    """An Events API `app_home_opened` callback for the Home tab, as Slack posts it (JSON)."""
    return json.dumps(
        {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1,
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": "D1",
                "tab": "home",
                "event_ts": "1.0",
            },
        }
    )


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    for block in message.get("blocks", []):
        if block["type"] == "actions":
            for element in block["elements"]:
                if element["action_id"] == action_id:
                    return dict(element)
    raise AssertionError(f"no {action_id} button in {message.get('text')!r}")


def all_text(message: object) -> str:
    """Every string in a message (or a list of them), for assertions on what a person would read."""
    return json.dumps(message, ensure_ascii=False)


@contextlib.asynccontextmanager
async def running(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, **overrides: Any
) -> AsyncIterator[SlackClient]:
    """An app instance with these setting overrides, closed afterwards."""
    client = build(slack, sandbox, redis_url, **overrides)
    try:
        yield client
    finally:
        await client.aclose()


def build(slack: FakeSlack, sandbox: Sandbox, redis_url: str, **overrides: Any) -> SlackClient:
    settings = settings_for(slack, sandbox, redis_url, **overrides)
    return SlackClient(build_app(settings, seats_transport=sandbox.transport()), slack)


async def card_for(bot: SlackClient, text: str, **kw: str) -> dict[str, Any]:
    """Send `/seat <text>` and return the one message it answers with."""
    response, key = await bot.command(text, **kw)
    assert response.status_code == 200
    (message,) = await bot.slack.wait_responses(key, 1)
    return message


async def card_from_a_stopped_instance(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, text: str
) -> dict[str, Any]:
    """A card shown by an app instance that has stopped since (a restart, a deploy)."""
    async with running(slack, sandbox, redis_url) as gone:
        return await card_for(gone, text)


async def confirm(
    bot: SlackClient, card: dict[str, Any], count: int, *, user: str = ADMIN, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Click the card's Confirm button; the first `count` messages sent to that click's response_url."""
    response, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"], user=user)
    assert response.status_code == 200
    return await bot.slack.wait_responses(key, count, timeout=timeout)
