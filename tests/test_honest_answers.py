"""Headlines that tell the truth and refusals that name people (issue 21 items 4-5): signed requests
through the real app, real Redis, the sandbox."""

from __future__ import annotations

import pytest
import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, ADMIN2, ALICE, OUTSIDER, all_text, button, card_for, running

BOB = "bob@example.com"


# -- item 4: a failed look-up is headed as one ------------------------------------------------------


async def test_a_look_up_refused_by_the_rate_budget_is_not_nothing_to_revoke(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A budget of one request, used by a status: the revoke after it says the look-up failed, what to
    do, and that nothing changed; it never says there is nothing to revoke."""
    async with running(
        slack, sandbox, redis_url, cloudflare_rate_limit=1, cloudflare_budget_wait_seconds=0
    ) as bot:
        await card_for(bot, f"status {ALICE}")
        message = await card_for(bot, f"revoke {BOB}")
    text = all_text(message)
    assert message["text"].startswith("Could not look up 1 of 1 target(s); nothing was changed."), text
    assert "Nothing to revoke" not in text and "rate budget" in text
    assert "What to do: Cloudflare's request budget for the bot's token is used up" in text
    assert sandbox.patches == []


async def test_a_look_up_failed_on_authentication_is_not_zero_found(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Cloudflare answering 401: the status is headed as a failed look-up with the fix, not "0 found";
    a look-up that works next to it still shows its person."""
    async with running(slack, sandbox, redis_url) as bot:
        sandbox.inject(status=401, code=10000, message="Authentication error", methods=("GET",))
        failed = await card_for(bot, f"status {BOB}")
        sandbox.inject(status=401, code=10000, message="Authentication error", methods=("GET",))
        mixed = await card_for(bot, f"status {BOB} {ALICE}")
    assert failed["text"] == "Seat status: 1 look-up(s) failed", all_text(failed)
    assert "(0 found)" not in all_text(failed) and "CLOUDFLARE_API_TOKEN" in all_text(failed)
    assert mixed["text"] == "Seat status: 1 look-up(s) failed, 1 found"
    assert "Alice Example" in all_text(mixed)


# -- item 5: refusals name the admins and the channels ----------------------------------------------


async def test_a_non_admin_is_told_who_the_admins_are_not_a_setting(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """The refusal names the admins and the admin group as mentions; the channel refusal names the
    allowed channels as links; no setting name a person in Slack cannot see."""
    overrides = {"seatbot_admin_groups": ("S0ONCALL",), "seatbot_channels": ("C0OPS", "C0OFFBOARD")}
    async with running(slack, sandbox, redis_url, **overrides) as bot:
        refused = await card_for(bot, f"revoke {ALICE}", user=OUTSIDER)
        elsewhere = await card_for(bot, f"revoke {ALICE}", channel="C0RANDOM")
    text = refused["blocks"][0]["text"]["text"]
    assert f"<@{ADMIN}>, <@{ADMIN2}> or a member of <!subteam^S0ONCALL>." in text, text
    assert "SEATBOT_" not in all_text(refused)
    where = elsewhere["blocks"][0]["text"]["text"]
    assert "Use <#C0OFFBOARD> or <#C0OPS>." in where and "SEATBOT_" not in all_text(elsewhere)


@pytest.mark.parametrize("two_person", [True, False])
async def test_cancel_refusals_say_who_may_cancel(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis, two_person: bool
) -> None:
    """Two-person rule: a non-admin's Cancel is told that any admin may cancel, and who they are, and
    another admin's Cancel works. Without it, only the requester may, and the refusal names them."""
    async with running(slack, sandbox, redis_url, seatbot_two_person=two_person) as bot:
        card = await card_for(bot, f"revoke {ALICE}")
        pending = button(card, "seat_cancel")["value"]
        _, key = await bot.click("seat_cancel", pending, user=OUTSIDER)
        (refused,) = await bot.slack.wait_responses(key, 1)
        _, key = await bot.click("seat_cancel", pending, user=ADMIN2)
        (second,) = await bot.slack.wait_responses(key, 1)
    text = refused["text"]
    assert "Only the admin who asked for this can cancel" not in text or not two_person
    if two_person:
        assert text == f"Only seat-bot admins can cancel this. Ask one of them: <@{ADMIN}> or <@{ADMIN2}>."
        assert f"Cancelled by <@{ADMIN2}>" in second["text"]
    else:
        assert text == f"Only the admin who asked for this can cancel it: <@{ADMIN}>."
        assert second["text"] == text
    assert sandbox.patches == []
