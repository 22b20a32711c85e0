"""`/seat idle` on the seat directory: no Cloudflare request when warm, refresh when stale, scan when
off, and sweeps inside the shared rate budget (a sweep without room pauses, resumes once, reports)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aredis

from bot.cloudflare.budget import PREFIX as BUDGET
from bot.devtools.demo_idle import user_at
from bot.devtools.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack
from tests.support.harness import SlackClient, all_text, button, card_for, running

NOW = datetime.now(UTC)


def add_idle(sandbox: Sandbox, count: int, *, prefix: str = "idle") -> list[dict[str, Any]]:
    return [
        sandbox.add_user(
            user_at(
                f"{prefix}{n:05d}@example.com",
                last_login=NOW - timedelta(days=45),
                created=NOW - timedelta(days=400),
            )
        )
        for n in range(count)
    ]


async def sync(bot: SlackClient) -> None:
    message = await card_for(bot, "sync")
    assert "Directory synced" in message["text"], message["text"]


async def outcome_of(bot: SlackClient, message: dict[str, Any]) -> dict[str, Any]:
    _, key = await bot.click("seat_confirm", button(message, "seat_confirm")["value"])
    slack = bot.slack
    await slack.wait_for(
        lambda: any(r.get("response_type") == "in_channel" for r in slack.responses[key]), 30
    )
    return next(r for r in slack.responses[key] if r.get("response_type") == "in_channel")


async def test_warm_directory_answers_without_cloudflare_and_sweeps_only_patch(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """After a sync: the report and the re-check cost 0 requests; PATCHes go through the rate budget."""
    users = add_idle(sandbox, 120)
    await sync(bot)
    sandbox.requests.clear()
    window_before = await redis_client.zcard(f"{BUDGET}:window")
    message = await card_for(bot, "idle")
    assert message["text"].startswith(
        "120 idle seats of 125 in use"
    ) and "seat directory, synced" in all_text(message)
    assert sandbox.requests == []
    outcome = await outcome_of(bot, message)
    assert outcome["text"] == "Idle sweep: 120 freed, 0 skipped, 0 failed"
    assert [r.method for r in sandbox.requests] == ["PATCH"] * 3
    assert await redis_client.zcard(f"{BUDGET}:window") == window_before + 3
    assert all(not u["access_seat"] for u in users)
    again = await card_for(bot, "idle")  # the directory knows they were freed, before any new sync
    assert again["text"].startswith("0 idle seats of 5 in use") and sandbox.requests[-1].method == "PATCH"


async def test_a_stale_directory_is_refreshed_first(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Older than SEATBOT_DIRECTORY_REFRESH_SECONDS: `/seat idle` syncs, then answers with the news."""
    add_idle(sandbox, 3)
    async with running(slack, sandbox, redis_url, seatbot_directory_refresh_seconds=3600) as bot:
        assert (await card_for(bot, "idle"))["text"].startswith("3 idle seats")  # first sync, on demand
        add_idle(sandbox, 2, prefix="later")
        assert (await card_for(bot, "idle"))["text"].startswith("3 idle seats")  # fresh: no request
        await redis_client.hset("{seatbot}:dir:meta", "synced_at", str(NOW.timestamp() - 7200))
        sandbox.requests.clear()
        message = await card_for(bot, "idle")
    assert message["text"].startswith("5 idle seats") and {r.method for r in sandbox.requests} == {"GET"}


async def test_directory_off_scans_and_says_so(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """SEATBOT_DIRECTORY_REFRESH_SECONDS=0: the report comes from a scan and says why."""
    add_idle(sandbox, 2)
    async with running(slack, sandbox, redis_url, seatbot_directory_refresh_seconds=0) as bot:
        sandbox.requests.clear()
        message = await card_for(bot, "idle")
    text = all_text(message)
    assert message["text"].startswith("2 idle seats") and "a full listing from Cloudflare" in text
    assert len(sandbox.requests) == 1


async def test_a_sweep_without_room_in_the_budget_pauses_and_the_job_runner_finishes_it(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A budget of 20 (10 for background work): the sweep frees what fits now; the job runner frees
    the rest once there is room and posts the outcome, with its CSV, in the channel."""
    users = add_idle(sandbox, 400)
    settings = {
        "cloudflare_rate_limit": 20,
        "cloudflare_budget_wait_seconds": 0,
        "seatbot_directory_rate_share": 0.5,
        "seatbot_sweep_resume_seconds": 0.5,
    }
    async with running(slack, sandbox, redis_url, **settings) as bot:
        await bot.app.state.runtime.start_jobs()  # the job runner's first refresh syncs the directory
        sync_ = bot.app.state.runtime.directory_sync
        for _ in range(200):
            if (await sync_.status()).state == "ready":
                break
            await asyncio.sleep(0.05)
        assert (await sync_.status()).users == 405
        await redis_client.delete(f"{BUDGET}:window")  # the sync's pages leave the window
        await redis_client.zadd(f"{BUDGET}:window", {f"other-{n}": NOW.timestamp() * 1000 for n in range(6)})
        message = await card_for(bot, "idle --reason budget")
        outcome = await outcome_of(bot, message)
        assert outcome["text"] == "Idle sweep: 200 freed, 0 skipped, 0 failed, 200 continuing"
        assert "continues on its own" in all_text(outcome)
        assert sum(not u["access_seat"] for u in users) == 200
        await redis_client.delete(f"{BUDGET}:window")  # five minutes later: room again
        await slack.wait_for(lambda: any("continued" in str(p.get("text")) for p in slack.posts), 20)
        await slack.wait_for(lambda: len(slack.uploaded()) == 3, 10)
    assert sum(not u["access_seat"] for u in users) == 400
    (post,) = [p for p in slack.posts if "continued" in str(p.get("text"))]
    assert "400 freed, 0 skipped, 0 failed" in post["text"] and post["channel"] == "C0OPS"  # all of it
    freed_files = [f for f in slack.uploaded() if f["filename"].startswith("freed-seats-")]
    assert [f["content"].count(b"\n") - 1 for f in freed_files] == [200, 400]


async def test_a_revoked_seat_leaves_the_idle_list_before_the_next_sync(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """A person revoked with `/seat revoke` is not listed again by `/seat idle` on the same directory."""
    (user,) = add_idle(sandbox, 1)
    await sync(bot)
    assert (await card_for(bot, "idle"))["text"].startswith("1 idle seat")
    card = await card_for(bot, f"revoke {user['email']}")
    _, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    await bot.slack.wait_for(
        lambda: any(r.get("response_type") == "in_channel" for r in bot.slack.responses[key])
    )
    assert (await card_for(bot, "idle"))["text"].startswith("0 idle seats of 5 in use")
