"""Failure handling on real parts: Cloudflare outages, a Redis that stops and comes back, restarts."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.domain.models import Pending, PendingTarget, new_id
from bot.state.pending import PREFIX, PendingStore
from tests.support.fake_slack import FakeSlack
from tests.support.flow import audit_events
from tests.support.harness import (
    ALICE,
    SlackClient,
    all_text,
    build,
    button,
    card_for,
    card_from_a_stopped_instance,
    confirm,
    running,
)
from tests.support.servers import RedisServer


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, so it can be stopped and restarted."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def outage_bot(
    slack: FakeSlack, sandbox: Sandbox, private_redis: RedisServer
) -> AsyncIterator[SlackClient]:
    bot = build(slack, sandbox, private_redis.url)
    yield bot
    await bot.aclose()


async def timed_reply(
    bot: SlackClient, coro: Awaitable[tuple[httpx.Response, str]], count: int = 1
) -> tuple[list[dict[str, Any]], float]:
    started = time.perf_counter()
    response, key = await coro
    assert response.status_code == 200
    replies = await bot.slack.wait_responses(key, count, timeout=5)
    return replies, time.perf_counter() - started


async def test_cloudflare_5xx_and_429_are_retried_then_succeed(bot: SlackClient, sandbox: Sandbox) -> None:
    """A 503 and a 429 with Retry-After: 0 on the PATCH are retried; the revoke still completes."""
    card = await card_for(bot, f"revoke {ALICE}")
    sandbox.inject(status=503, methods=("PATCH",))
    sandbox.inject(status=429, retry_after="0", methods=("PATCH",))
    posts = await confirm(bot, card, 3, timeout=15)
    assert "access ✗ / gateway ✗" in all_text(posts[1])
    assert len(sandbox.patches) == 3


async def test_cloudflare_down_says_unavailable_and_claims_nothing(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """5xx past the retry budget: the card says so, offers a fresh try, nothing is posted as done."""
    async with running(slack, sandbox, redis_url, cloudflare_retry_deadline_seconds=0.5) as bot:
        card = await card_for(bot, f"revoke {ALICE}")
        sandbox.inject(status=502, html=True, times=50, methods=("PATCH",))
        posts = await confirm(bot, card, 2, timeout=15)
        text = all_text(posts[1])
        assert "Cloudflare unavailable after" in text and "attempts" in text
        assert button(posts[1], "seat_confirm")  # a fresh try
        assert not any(p.get("response_type") == "in_channel" for p in posts)
        alice = next(u for u in sandbox.users.values() if u["email"] == ALICE)
        assert alice["access_seat"] is True


async def test_redis_outage_answers_fast_and_recovers(
    outage_bot: SlackClient, private_redis: RedisServer, sandbox: Sandbox
) -> None:
    """Redis stopped: command, click and /readyz (503) answer within 3 s; after restart all works again."""
    card = await card_for(outage_bot, f"revoke {ALICE}")
    value = button(card, "seat_confirm")["value"]
    private_redis.stop()

    replies, took = await timed_reply(outage_bot, outage_bot.command(f"revoke {ALICE}"))
    assert "temporarily unavailable" in replies[0]["text"] and took < 3
    assert "Traceback" not in all_text(replies[0])
    replies, took = await timed_reply(outage_bot, outage_bot.click("seat_confirm", value))
    assert "temporarily unavailable" in replies[0]["text"] and took < 3
    started = time.perf_counter()
    ready = await outage_bot.http.get("/readyz")
    assert ready.status_code == 503 and time.perf_counter() - started < 3
    assert sandbox.patches == []

    private_redis.start()  # same port, empty: the old card is gone, a new one works
    assert (await outage_bot.http.get("/readyz")).status_code == 200
    card = await card_for(outage_bot, f"revoke {ALICE}")
    posts = await confirm(outage_bot, card, 3)
    assert "access ✗ / gateway ✗" in all_text(posts[1])


async def test_restart_between_command_and_click(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """The process that showed the card is gone; a new one handles the click from Redis."""
    card = await card_from_a_stopped_instance(slack, sandbox, redis_url, f"revoke {ALICE}")
    async with running(slack, sandbox, redis_url) as second:
        posts = await confirm(second, card, 3)
        assert "access ✗ / gateway ✗" in all_text(posts[1]) and len(sandbox.patches) == 1


async def test_card_from_an_older_release_says_it_is_outdated(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """A pending record of another format version is refused clearly, used up, and calls nothing."""
    old = Pending(
        id="ab" * 16,
        requester="UADMIN1",
        channel="C0OPS",
        targets=[PendingTarget(label=ALICE, seat_uid="c6edcb67-0714-5d82-ab67-eac89e8458f6")],
        reason=None,
        created_at=0,
        expires_at=0,
        v=0,
    )
    await redis_client.set(PREFIX + old.id, old.dumps(), ex=60)
    _, key = await bot.click("seat_confirm", old.id)
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert "another version" in reply["text"] and "Run the command again" in reply["text"]
    assert await redis_client.exists(PREFIX + old.id) == 0
    assert sandbox.patches == []


async def test_failure_after_an_earlier_chunk_reports_what_was_removed(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Chunk 1 removed, chunk 2 refused: the card names the removed seat and retries only the rest."""
    async with running(slack, sandbox, redis_url, cloudflare_chunk_size=1) as bot:
        card = await card_for(bot, f"revoke {ALICE} bob@example.com")
        sandbox.inject(status=400, code=10001, message="seat locked", methods=("PATCH",), skip=1)
        posts = await confirm(bot, card, 2)
        failed = all_text(posts[1])
        assert "Removed before the failure" in failed and ALICE in failed and "seat locked" in failed
        assert "Revoke 1 seat" in failed  # the fresh try covers bob only
        _, key2 = await bot.click("seat_confirm", button(posts[1], "seat_confirm")["value"])
        posts2 = await slack.wait_responses(key2, 3)
        assert "bob@example.com" in all_text(posts2[1]) and ALICE not in all_text(posts2[1])
        assert [len(p.body) for p in sandbox.patches] == [1, 1, 1]


async def test_unreadable_later_chunk_still_reports_earlier_removals(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Chunk 2's answer cannot be read: chunk 1's removal is still reported and audited as done."""
    async with running(slack, sandbox, redis_url, cloudflare_chunk_size=1) as bot:
        bob = next(u for u in sandbox.users.values() if u["email"] == "bob@example.com")
        sandbox.garble.add(bob["seat_uid"])
        card = await card_for(bot, f"revoke {ALICE} bob@example.com")
        posts = await confirm(bot, card, 2)
        text = all_text(posts[1])
        assert "Removed before the failure" in text and ALICE in text.split("Removed before the failure")[1]
        assert "cannot read" in text
        events = await audit_events(redis_client)
        assert [e["email"] for e in events if e["event"] == "succeeded"] == [ALICE]
        assert any(e["event"] == "requested" and e.get("retry_of") for e in events)


async def test_channel_post_failure_keeps_the_outcome_on_the_card(
    bot: SlackClient, slack: FakeSlack, sandbox: Sandbox
) -> None:
    """If the in-channel post is refused, the card shows the outcome instead of claiming it was posted."""
    slack.reject_in_channel = True
    card = await card_for(bot, f"revoke {ALICE}")
    posts = await confirm(bot, card, 2)
    assert "Zero Trust seats revoked: 1 of 1" in posts[-1]["text"] and posts[-1]["replace_original"] is True
    assert not any("posted in the channel" in p["text"] for p in posts)


async def test_claim_is_idempotent_for_a_resent_script(redis_client: aredis.Redis) -> None:
    """A claim the client re-sends (same nonce) is claimed again; a new click of the same admin is busy."""
    store = PendingStore(redis_client)
    pending = Pending(new_id(), "U1", "C1", [PendingTarget("x", "seat-1")], None, 0.0, 60.0)
    await store.put(pending, ttl=60)
    claim = functools.partial(
        store.claim, pending.id, clicker="U1", action="confirm", clicker_is_admin=True, two_person=False
    )
    first, again, other = [await claim(nonce=nonce) for nonce in ("n1", "n1", "n2")]
    assert (first.status, again.status, other.status) == ("claimed", "claimed", "busy")
    assert again.pending == first.pending == pending


async def test_turning_on_two_person_applies_to_existing_cards(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A card made before SEATBOT_TWO_PERSON was switched on cannot be self-confirmed afterwards."""
    card = await card_from_a_stopped_instance(slack, sandbox, redis_url, f"revoke {ALICE}")
    async with running(slack, sandbox, redis_url, seatbot_two_person=True) as after:
        (reply,) = await confirm(after, card, 1)
        assert "another admin" in reply["text"] and sandbox.patches == []
