"""Two-person rule, required reasons and the audit trail, end to end on real parts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.state.audit import STREAM
from tests.support.fake_slack import FakeSlack
from tests.support.flow import audit_events
from tests.support.harness import (
    ADMIN,
    ADMIN2,
    ALICE,
    OUTSIDER,
    SlackClient,
    all_text,
    build,
    button,
    card_for,
    confirm,
    running,
)


@pytest.fixture
async def two_person(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> AsyncIterator[SlackClient]:
    bot = build(slack, sandbox, redis_url, seatbot_two_person=True)
    yield bot
    await bot.aclose()


async def test_two_person_card_is_public_and_requester_cannot_confirm(
    two_person: SlackClient, sandbox: Sandbox
) -> None:
    """The card goes in the channel; the requester's own click is refused and changes nothing."""
    card = await card_for(two_person, f"revoke {ALICE} --reason offboarding")
    assert card["response_type"] == "in_channel"
    assert f"<@{ADMIN}> cannot confirm their own request" in all_text(card)
    value = button(card, "seat_confirm")["value"]
    _, key = await two_person.click("seat_confirm", value, user=ADMIN)
    (reply,) = await two_person.slack.wait_responses(key, 1)
    assert "another admin" in reply["text"] and reply["replace_original"] is False
    assert sandbox.patches == []
    _, key2 = await two_person.click("seat_confirm", value, user=ADMIN2)
    posts = await two_person.slack.wait_responses(key2, 2)
    outcome = posts[-1]
    assert outcome["response_type"] == "in_channel" and outcome["replace_original"] is True
    assert f"Requested by <@{ADMIN}>" in all_text(outcome) and f"confirmed by <@{ADMIN2}>" in all_text(
        outcome
    )
    assert len(sandbox.patches) == 1


@pytest.mark.parametrize("canceller", [ADMIN, ADMIN2])
async def test_two_person_requester_or_any_admin_may_cancel(
    two_person: SlackClient, sandbox: Sandbox, canceller: str
) -> None:
    """Under the two-person rule the requester or any other admin may cancel."""
    card = await card_for(two_person, f"revoke {ALICE}")
    _, key = await two_person.click("seat_cancel", button(card, "seat_cancel")["value"], user=canceller)
    (reply,) = await two_person.slack.wait_responses(key, 1)
    assert f"Cancelled by <@{canceller}>" in reply["text"]
    assert sandbox.patches == []


async def test_two_person_outsider_cannot_cancel(two_person: SlackClient) -> None:
    """A non-admin in the channel can see the card but cannot cancel it."""
    card = await card_for(two_person, f"revoke {ALICE}")
    value = button(card, "seat_cancel")["value"]
    _, key = await two_person.click("seat_cancel", value, user=OUTSIDER)
    (reply,) = await two_person.slack.wait_responses(key, 1)
    assert "Only" in reply["text"] and reply["replace_original"] is False
    _, key2 = await two_person.click("seat_cancel", value, user=ADMIN2)
    assert "Cancelled" in (await two_person.slack.wait_responses(key2, 1))[0]["text"]


async def test_reason_can_be_required(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """SEATBOT_REQUIRE_REASON refuses a revoke without --reason, before any Cloudflare call."""
    async with running(slack, sandbox, redis_url, seatbot_require_reason=True) as bot:
        refused = await card_for(bot, f"revoke {ALICE}")
        assert "--reason" in refused["text"] and sandbox.requests == []
        card = await card_for(bot, f"revoke {ALICE} --reason contract ended")
        assert button(card, "seat_confirm")


async def test_every_event_is_in_the_stream_and_the_audit_command(
    bot: SlackClient, redis_client: aredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """requested, refused, confirmed, succeeded (with cf-ray), cancelled and expired clicks are recorded."""
    caplog.set_level(logging.INFO, logger="seatbot.audit")
    await card_for(bot, f"revoke {ALICE}", user=OUTSIDER)
    card = await card_for(bot, f"revoke {ALICE} --reason audit me")
    value = button(card, "seat_confirm")["value"]
    _, key = await bot.click("seat_confirm", value)
    await bot.slack.wait_responses(key, 3)
    _, key = await bot.click("seat_confirm", value)
    await bot.slack.wait_responses(key, 1)
    other = await card_for(bot, "revoke bob@example.com")
    _, key = await bot.click("seat_cancel", button(other, "seat_cancel")["value"])
    await bot.slack.wait_responses(key, 1)
    events = await audit_events(redis_client)
    kinds = [e["event"] for e in events]
    assert kinds == [
        "refused",
        "requested",
        "confirmed",
        "succeeded",
        "expired_click",
        "requested",
        "cancelled",
    ]
    succeeded = events[3]
    assert succeeded["email"] == ALICE and succeeded["access_seat"] is False and succeeded["cf_ray"]
    assert succeeded["user"] == ADMIN and succeeded["reason"] == "audit me"
    assert events[0]["user"] == OUTSIDER and events[0]["why"] == "not an admin"
    logged = [r.audit["event"] for r in caplog.records if hasattr(r, "audit")]
    assert logged == kinds
    listing = await card_for(bot, "audit 3")
    text = all_text(listing)
    real, apart = text.split("Refused and expired clicks, kept apart")
    assert listing["response_type"] == "ephemeral" and "cancelled" in real and "refused" not in real
    assert "*refused* by <@UOUTSIDER>" in apart and "*expired_click*" in apart
    assert "Only seat-bot admins" in (await card_for(bot, "audit", user=OUTSIDER))["text"]


async def test_failed_revoke_is_audited_with_cloudflare_error(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """A Cloudflare failure is recorded with its message, status and cf-ray."""
    card = await card_for(bot, f"revoke {ALICE}")
    sandbox.inject(status=400, code=12345, message="seat locked", methods=("PATCH",))
    await confirm(bot, card, 2)
    failed = [e for e in await audit_events(redis_client) if e["event"] == "failed"]
    assert failed and "12345: seat locked" in failed[0]["error"] and failed[0]["status"] == 400
    assert failed[0]["cf_ray"]


async def test_audit_stream_is_bounded(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """The stream keeps at most SEATBOT_AUDIT_MAXLEN entries."""
    async with running(slack, sandbox, redis_url, seatbot_audit_maxlen=100) as bot:
        audit = bot.app.state.runtime.flow.audit
        for n in range(130):
            assert await audit.record("requested", user="U1", n=n)
        assert await redis_client.xlen(STREAM) == 100
        newest = await audit.recent(1)
        assert newest[0]["n"] == 129


async def test_failed_audit_write_is_never_silent(
    bot: SlackClient, redis_client: aredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """When the stream cannot be written, an error is logged and the reply says so."""
    await redis_client.set(STREAM, "not a stream")  # XADD now fails with WRONGTYPE
    card = await card_for(bot, f"revoke {ALICE}")
    assert "audit trail could not be written" in all_text(card)
    assert any(r.levelname == "ERROR" and "audit write" in r.getMessage() for r in caplog.records)
    posts = await confirm(bot, card, 3)
    assert "audit trail write failed" in all_text(posts[1])


async def test_audit_channel_gets_outcomes(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """SEATBOT_AUDIT_CHANNEL receives every outcome through chat.postMessage."""
    async with running(slack, sandbox, redis_url, seatbot_audit_channel="C0AUDIT") as bot:
        card = await card_for(bot, f"revoke {ALICE}")
        await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
        await slack.wait_for(lambda: len(slack.posts) >= 1)
        other = await card_for(bot, "revoke bob@example.com")
        await bot.click("seat_cancel", button(other, "seat_cancel")["value"])
        await slack.wait_for(lambda: len(slack.posts) >= 2)
        assert [p["channel"] for p in slack.posts] == ["C0AUDIT", "C0AUDIT"]
        assert "revoked" in slack.posts[0]["text"] and "Cancelled" in slack.posts[1]["text"]


async def test_audit_channel_not_in_channel_tells_operator(
    slack: FakeSlack,
    sandbox: Sandbox,
    redis_url: str,
    redis_client: aredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """not_in_channel becomes a clear log line telling the operator to invite the bot."""
    slack.post_error = "not_in_channel"
    async with running(slack, sandbox, redis_url, seatbot_audit_channel="C0AUDIT") as bot:
        card = await card_for(bot, f"revoke {ALICE}")
        await confirm(bot, card, 3)
        await slack.wait_for(lambda: "chat.postMessage" in slack.methods())
        for _ in range(50):
            if any("invite" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
        assert any(r.levelname == "ERROR" and "/invite" in r.getMessage() for r in caplog.records)


async def test_slack_429_on_post_message_is_retried(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A 429 from chat.postMessage is waited out (Retry-After) and the post still arrives."""
    slack.rate_limit_posts, slack.retry_after = 1, "1"
    async with running(slack, sandbox, redis_url, seatbot_audit_channel="C0AUDIT") as bot:
        card = await card_for(bot, f"revoke {ALICE}")
        await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
        await slack.wait_for(lambda: len(slack.posts) >= 1, timeout=10)
        assert slack.methods().count("chat.postMessage") == 2
