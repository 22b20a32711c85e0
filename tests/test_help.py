"""`/seat help` as a short card and manifest.yml's usage hint (issue 21 item 6): signed requests through
the real app, real Redis, the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import redis.asyncio as aredis
import yaml

from bot.devtools.sandbox import Sandbox
from bot.domain.help import NAMES, VERBS
from bot.domain.parse import OPTIONS, parse
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, ADMIN2, OUTSIDER, all_text, card_for, running

ROOT = Path(__file__).resolve().parents[1]


async def test_help_is_a_short_card_with_an_example_per_verb(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A header, one line per verb with an example, who may use them (the admins and the group named),
    and a link to the full guide; only the asker sees it, and anyone may ask."""
    overrides = {
        "seatbot_admin_groups": ("S0ONCALL",),
        "seatbot_help_url": "https://wiki.example.com/seatbot",
    }
    async with running(slack, sandbox, redis_url, **overrides) as bot:
        message = await card_for(bot, "help", user=OUTSIDER)
    blocks = message["blocks"]
    assert message["response_type"] == "ephemeral" and blocks[0]["type"] == "header"
    lines = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section").splitlines()
    assert len(lines) == len(VERBS) <= 10
    for verb, line in zip(VERBS, lines, strict=True):
        assert line.startswith(f"• `{verb.example}` — ")
    assert {line.split()[2].rstrip("`") for line in lines} == set(NAMES)  # every verb has its example
    footer = all_text(blocks[-1])
    assert f"<@{ADMIN}>, <@{ADMIN2}> or a member of <!subteam^S0ONCALL>" in footer
    assert "<https://wiki.example.com/seatbot|the full guide>" in footer
    assert "SEATBOT_" not in all_text(message) and sandbox.requests == []


def test_every_example_on_the_help_card_is_a_valid_command() -> None:
    """An example that does not parse would teach the wrong thing."""
    for verb in VERBS:
        command = parse(verb.example.removeprefix("/seat "))
        assert command.action == verb.name, verb.example


def test_the_manifest_usage_hint_covers_every_verb_and_option() -> None:
    """Slack shows the usage hint as people type `/seat`: every verb and option is in it."""
    m = cast(dict[str, Any], yaml.safe_load((ROOT / "manifest.yml").read_text()))
    (command,) = m["features"]["slash_commands"]
    words = command["usage_hint"].replace("|", " ").split()
    for name in NAMES:
        assert name in words, name
    for option in OPTIONS:
        assert f"[{option}" in words, option
