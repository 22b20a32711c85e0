"""Issue 17 §5: outcomes reach Slack through 500s and 429s, or are kept and delivered later (chaos)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aredis
from slack_sdk.web.async_client import AsyncWebClient

from bot.devtools.sandbox import Sandbox
from bot.slack.outbox import Outbox, SlackPoster
from bot.state.outbox import KEY, OutboxStore
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ALICE,
    CHANNEL,
    SlackClient,
    all_text,
    button,
    card_for,
    home_opened_body,
    running,
    sign,
)

pytestmark = pytest.mark.chaos
AUDIT = "C0AUDIT"
REVOKED = "Zero Trust seats revoked: 1 of 1"


def posts_in(slack: FakeSlack, channel: str, needle: str) -> list[dict[str, Any]]:
    return [p for p in slack.posts if p.get("channel") == channel and needle in str(p.get("text"))]


async def confirm_without_response_url(bot: SlackClient, slack: FakeSlack) -> None:
    """Confirm a revoke of ALICE whose response_url is expired: the outcome must go by chat.postMessage."""
    card = await card_for(bot, f"revoke {ALICE}")
    slack.reject_responses = True
    response, _ = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    assert response.status_code == 200


async def open_home(bot: SlackClient, user: str) -> str:
    body = home_opened_body(user, event_id=f"Ev{time.monotonic_ns()}")
    before = len(bot.slack.views)
    assert (await bot.post(body, {**sign(body), "Content-Type": "application/json"})).status_code == 200
    await bot.slack.wait_for(lambda: len(bot.slack.views) > before)
    return all_text(bot.slack.views[-1]["view"])


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
async def test_slack_500s_with_an_html_body_are_retried_and_the_audit_copy_goes_on_its_own(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis, content_type: str
) -> None:
    """chat.postMessage answering 500 (an HTML page, even one called JSON) twice: no crash, retried,
    and the audit channel's copy is posted whatever happens to the channel's."""
    slack.failure_content_type = content_type
    async with running(slack, sandbox, redis_url, seatbot_audit_channel=AUDIT) as bot:
        slack.fail_posts = 2
        await confirm_without_response_url(bot, slack)
        await slack.wait_for(lambda: posts_in(slack, CHANNEL, REVOKED) and posts_in(slack, AUDIT, ""), 20)
    assert len(slack.refused_posts) == 2 and len(sandbox.patches) == 1
    assert len(posts_in(slack, CHANNEL, REVOKED)) == 1  # once, not once per try


async def test_slack_429_is_waited_out_past_four_tries(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Six 429s in a row (Retry-After: 0): the outcome still arrives, within the retry time."""
    slack.retry_after = "0"
    async with running(slack, sandbox, redis_url) as bot:
        slack.rate_limit_posts = 6
        await confirm_without_response_url(bot, slack)
        await slack.wait_for(lambda: bool(posts_in(slack, CHANNEL, REVOKED)), 20)
    assert len(slack.refused_posts) == 6


async def test_an_outcome_slack_keeps_refusing_is_kept_shown_on_the_home_and_delivered_later(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Slack down past the retry time: the outcome is kept in Redis, the App Home lists it, and the job
    runner delivers it once Slack is back, once."""
    settings = {"seatbot_slack_retry_seconds": 0.5, "seatbot_outbox_retry_seconds": 1.0}
    async with running(slack, sandbox, redis_url, seatbot_audit_channel=AUDIT, **settings) as bot:
        slack.fail_channels = {CHANNEL}
        await confirm_without_response_url(bot, slack)
        await slack.wait_for(lambda: bool(posts_in(slack, AUDIT, "")), 10)  # the copy went on its own
        kept = await wait_kept(redis_client, 1)
        assert kept[0]["channel"] == CHANNEL and REVOKED in kept[0]["text"]
        assert kept[0]["why"] == "HTTP 500 (Slack's side)" and kept[0]["what"] == "outcome"
        home = await open_home(bot, ADMIN)
        assert "Not delivered to Slack yet" in home and REVOKED in home and "HTTP 500" in home
        slack.fail_channels = set()
        await bot.app.state.runtime.start_jobs()
        await slack.wait_for(lambda: bool(posts_in(slack, CHANNEL, REVOKED)), 10)
        assert await wait_kept(redis_client, 0) == []
    assert len(posts_in(slack, CHANNEL, REVOKED)) == 1 and len(sandbox.patches) == 1


async def wait_kept(redis: aredis.Redis, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        kept = [json.loads(v) for v in await redis.hvals(KEY)]
        if len(kept) == count:
            return kept
        assert time.monotonic() < deadline, kept
        await asyncio.sleep(0.05)


def iso_in(seconds: float) -> str:
    return (
        datetime.fromtimestamp(math.ceil(time.time()) + seconds, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


async def test_scheduled_news_reaches_the_audit_channel_and_later_its_own(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A scheduled removal fires while Slack refuses its channel: the announcer goes on to the audit
    channel, and the channel gets the news once Slack takes it again."""
    settings = {"seatbot_slack_retry_seconds": 0.5, "seatbot_outbox_retry_seconds": 1.0}
    async with running(slack, sandbox, redis_url, seatbot_audit_channel=AUDIT, **settings) as bot:
        await bot.app.state.runtime.start_jobs()
        card = await card_for(bot, f"revoke {ALICE} --at {iso_in(2)}")
        slack.fail_channels = {CHANNEL}
        response, _ = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
        assert response.status_code == 200
        await slack.wait_for(lambda: bool(posts_in(slack, AUDIT, "Scheduled removal done")), 15)
        (kept,) = await wait_kept(redis_client, 1)
        assert kept["channel"] == CHANNEL and kept["what"] == "scheduled removal's news"
        slack.fail_channels = set()
        await slack.wait_for(lambda: bool(posts_in(slack, CHANNEL, "Scheduled removal done")), 10)
    assert len(sandbox.patches) == 1


async def test_a_retry_run_stops_at_the_first_sign_slack_is_still_down(
    slack: FakeSlack, redis_client: aredis.Redis
) -> None:
    """Three kept messages while Slack answers 500: one try per run, not one per message; once
    Slack is back a run delivers them all, oldest first, and forgets them."""
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    outbox = Outbox(store=OutboxStore(redis_client), poster=SlackPoster(client, deadline=0))
    slack.fail_channels = {CHANNEL}
    for n in range(3):
        assert not await outbox.deliver(CHANNEL, {"text": f"outcome {n}", "blocks": None}, what="outcome")
    tried = len(slack.refused_posts)
    assert await outbox.retry() == 0 and len(slack.refused_posts) == tried + 1
    slack.fail_channels = set()
    assert await outbox.retry() == 3
    assert [p["text"] for p in slack.posts] == ["outcome 0", "outcome 1", "outcome 2"]
    assert await redis_client.hlen(KEY) == 0
