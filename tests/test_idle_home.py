"""The App Home lists scheduled removals with cancel buttons; a cancel there is the real cancel."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from bot.devtools.sandbox import Sandbox
from tests.support.harness import (
    ADMIN,
    ALICE,
    OUTSIDER,
    SlackClient,
    button,
    card_for,
    home_opened_body,
    sign,
)


async def open_home(bot: SlackClient, user: str) -> dict[str, Any]:
    before = len(bot.slack.views)
    body = home_opened_body(user, event_id=f"Ev{user}{before}")
    assert (await bot.post(body, {**sign(body), "Content-Type": "application/json"})).status_code == 200
    await bot.slack.wait_for(lambda: len(bot.slack.views) > before)
    return dict(bot.slack.views[-1]["view"])


async def click_in_home(bot: SlackClient, user: str, action_id: str, value: str) -> None:
    """A button on a Home tab: block_actions from a view, with no channel and no response_url."""
    before = len(bot.slack.views)
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "test"},
        "container": {"type": "view", "view_id": "V1"},
        "view": {"id": "V1", "type": "home", "blocks": []},
        "trigger_id": "1.2.3",
        "actions": [
            {"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1"}
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    assert (await bot.post(body)).status_code == 200
    await bot.slack.wait_for(lambda: len(bot.slack.views) > before)


async def test_scheduled_removals_show_with_cancel_buttons_that_work(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """Schedule a removal, open the Home: it is listed; Cancel there drops it and refreshes the tab."""
    card = await card_for(bot, f"revoke {ALICE} --at in 2h --reason last day")
    _, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    await bot.slack.wait_responses(key, 1)
    view = await open_home(bot, ADMIN)
    (item,) = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id") == "home_unschedule"]
    assert ALICE in item["text"]["text"] and "last day" in item["text"]["text"]
    await click_in_home(bot, OUTSIDER, "home_unschedule", item["accessory"]["value"])
    assert "home_unschedule" in json.dumps(await open_home(bot, ADMIN)), "a non-admin cannot cancel it"
    await click_in_home(bot, ADMIN, "home_unschedule", item["accessory"]["value"])
    refreshed = bot.slack.views[-1]["view"]
    assert "home_unschedule" not in json.dumps(refreshed) and "None scheduled." in json.dumps(refreshed)
    assert any("cancel" in str(p.get("text")).lower() for p in bot.slack.posts)
    (alice,) = [u for u in sandbox.users.values() if u["email"] == ALICE]
    assert alice["access_seat"] is True, "the cancelled removal never ran"
