"""Scheduled removals end to end: signed commands and clicks, real Redis, several app instances.

Times are real but short (a removal due in ~2 s): the job runner and the scheduled time are what
is being tested, so they are not faked; retries use a tiny delay instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aredis

from bot.app.schedule import resolve_at
from bot.devtools.sandbox import Sandbox
from bot.errors import ParseError
from tests.support.fake_slack import FakeSlack
from tests.support.flow import audit_events
from tests.support.harness import (
    ADMIN,
    ADMIN2,
    ALICE,
    CHANNEL,
    OUTSIDER,
    SlackClient,
    all_text,
    build,
    button,
    card_for,
)


@pytest.fixture(autouse=True)
def _empty_redis(redis_client: aredis.Redis) -> None:
    """Every test starts with no schedules (the fixture flushes the database)."""


def iso_in(seconds: float) -> str:
    """A time at least `seconds` ahead, in whole seconds (rounded up, so a loaded machine never
    turns it into a time already past by the confirm)."""
    return (
        datetime.fromtimestamp(math.ceil(time.time()) + seconds, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


async def started(bot: SlackClient) -> SlackClient:
    """What the ASGI lifespan does in a served process (httpx's ASGI transport skips it)."""
    await bot.app.state.runtime.start_jobs()
    return bot


async def schedule(bot: SlackClient, text: str, *, confirmer: str = ADMIN) -> dict[str, Any]:
    """`/seat revoke <text>` → confirm; returns the confirmation reply."""
    card = await card_for(bot, f"revoke {text}")
    assert "Schedule the removal" in card["text"], card["text"]
    response, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"], user=confirmer)
    assert response.status_code == 200
    (reply, *_) = await bot.slack.wait_responses(key, 1)
    return reply


def fired_posts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in slack.posts if "Scheduled removal" in str(p.get("text"))]


async def wait_fired(slack: FakeSlack, count: int = 1, timeout: float = 8.0) -> list[dict[str, Any]]:
    await slack.wait_for(lambda: len(fired_posts(slack)) >= count, timeout)
    return fired_posts(slack)


def blocks_of(post: dict[str, Any]) -> str:
    raw = post.get("blocks")
    return raw if isinstance(raw, str) else json.dumps(raw)


def unschedule_button(message: dict[str, Any]) -> dict[str, Any]:
    (found,) = [
        b["accessory"]
        for b in message["blocks"]
        if b.get("accessory", {}).get("action_id") == "seat_unschedule"
    ]
    return dict(found)


def alice_uid(sandbox: Sandbox) -> str:
    return next(uid for uid, u in sandbox.users.items() if u["email"] == ALICE)


async def test_fires_once_within_5s_across_two_processes(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Two app instances share Redis: the removal runs once, within 5 s of its time, posted once."""
    one, two = (
        await started(build(slack, sandbox, redis_url)),
        await started(build(slack, sandbox, redis_url)),
    )
    try:
        due = iso_in(2)
        at = datetime.fromisoformat(due).timestamp()
        reply = await schedule(one, f"{ALICE} --at {due} --reason last day")
        assert "scheduled for" in reply["text"] and sandbox.patches == []
        (post,) = await wait_fired(slack)
        await asyncio.sleep(1.5)  # a second firing would have shown by now
        assert len(fired_posts(slack)) == 1 and len(sandbox.patches) == 1
        updated = datetime.fromisoformat(sandbox.users[alice_uid(sandbox)]["updated_at"]).timestamp()
        assert at <= updated <= at + 5, updated - at
        text = blocks_of(post)
        assert post["channel"] == CHANNEL and "done: 1 seat(s) revoked" in post["text"]
        assert (
            f"scheduled by <@{ADMIN}>" in text and f"confirmed by <@{ADMIN}>" in text and "last day" in text
        )
        events = [e["event"] for e in await audit_events(redis_client)]
        assert events.count("scheduled") == 1 and events.count("succeeded") == 1
    finally:
        await one.aclose()
        await two.aclose()


async def test_survives_a_restart_of_every_process(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Scheduled, every process stops, new ones start: it still fires, once."""
    old = [await started(build(slack, sandbox, redis_url)) for _ in range(2)]
    await schedule(old[0], f"{ALICE} --at {iso_in(2)}")
    for bot in old:
        await bot.aclose()
    await asyncio.sleep(2.5)  # the time passes while nothing runs
    assert sandbox.patches == []
    new = [await started(build(slack, sandbox, redis_url)) for _ in range(2)]
    try:
        await wait_fired(slack)
        await asyncio.sleep(1.5)
        assert len(sandbox.patches) == 1 and len(fired_posts(slack)) == 1
        assert sandbox.users[alice_uid(sandbox)]["access_seat"] is False
        assert await redis_client.zcard("{seatbot}:sched:index") == 0
    finally:
        for bot in new:
            await bot.aclose()


async def test_cancel_prevents_it_and_is_audited_and_announced(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """`/seat scheduled` lists it; its cancel button (`seat_unschedule`) stops it and says so."""
    bot = await started(build(slack, sandbox, redis_url))
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)} --reason offboarding")
        listing = await card_for(bot, "scheduled")
        assert ALICE in all_text(listing) and "offboarding" in all_text(listing)
        cancel = unschedule_button(listing)
        await bot.click("seat_unschedule", cancel["value"], user=OUTSIDER)
        await asyncio.sleep(0.3)
        assert await redis_client.zcard("{seatbot}:sched:index") == 1  # a non-admin's click does nothing
        _, key = await bot.click("seat_unschedule", cancel["value"], user=ADMIN2)
        (reply,) = await slack.wait_responses(key, 1)
        assert "will not run" in reply["text"]
        await slack.wait_for(lambda: any("Cancelled scheduled" in str(p.get("text")) for p in slack.posts))
        await asyncio.sleep(3)
        assert sandbox.patches == [] and fired_posts(slack) == []
        events = await audit_events(redis_client)
        assert any(e["event"] == "unscheduled" and e["user"] == ADMIN2 for e in events)
        assert "No scheduled removals" in (await card_for(bot, "scheduled"))["text"]
    finally:
        await bot.aclose()


async def test_a_seat_removed_in_between_is_reported_not_resent(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """Alice is removed by hand before the time: the run reports her as already gone, sends nothing."""
    bot = await started(build(slack, sandbox, redis_url))
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        sandbox.users[alice_uid(sandbox)].update(access_seat=False, gateway_seat=False)
        (post,) = await wait_fired(slack)
        assert sandbox.patches == []
        assert "already removed before the time; not re-sent" in blocks_of(post)
    finally:
        await bot.aclose()


async def test_cloudflare_failure_is_retried_then_succeeds(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """Two failed PATCHes at the time, then success: one outcome, three attempts."""
    bot = await started(build(slack, sandbox, redis_url, seatbot_schedule_retry_seconds=30))
    bot.app.state.runtime.schedules.retry_delay = 0.05
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        sandbox.inject(status=400, code=10001, message="seat locked", methods=("PATCH",), times=2)
        (post,) = await wait_fired(slack)
        assert "done: 1 seat(s) revoked" in post["text"] and len(sandbox.patches) == 3
    finally:
        await bot.aclose()


async def test_cloudflare_failure_past_the_window_is_reported_with_try_again(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """Cloudflare keeps failing: after the window the channel gets the error and a try-again button."""
    bot = await started(build(slack, sandbox, redis_url, seatbot_schedule_retry_seconds=0.5))
    bot.app.state.runtime.schedules.retry_delay = 0.1
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        sandbox.inject(status=400, code=10001, message="seat locked", methods=("PATCH",), times=100)
        (post,) = await wait_fired(slack)
        assert "failed after" in post["text"] and "seat locked" in blocks_of(post)
        assert 2 <= len(sandbox.patches) <= 10
        retry = button({"blocks": json.loads(blocks_of(post))}, "seat_confirm")
        sandbox.faults.clear()
        _, key = await bot.click("seat_confirm", retry["value"], user=ADMIN)
        # the progress note and the PATCH start together: wait for the outcome, not the first post
        await slack.wait_for(lambda: "revoked" in all_text(slack.responses[key]))
        assert sandbox.users[alice_uid(sandbox)]["access_seat"] is False
    finally:
        await bot.aclose()


async def test_scheduling_a_scheduled_seat_shows_the_existing_one(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """A second `--at` for the same seat makes no card: it shows the existing schedule."""
    bot = build(slack, sandbox, redis_url)
    try:
        await schedule(bot, f"{ALICE} --at in 2h --reason first")
        again = await card_for(bot, f"revoke {ALICE} --at in 3h")
        assert "Already scheduled" in again["text"] and "first" in all_text(again)
        assert unschedule_button(again)["value"]
    finally:
        await bot.aclose()


async def test_card_says_when_in_the_zone_and_utc_and_two_person_rule_holds(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """SEATBOT_TIMEZONE=Europe/Paris: 17:00 Paris is 16:00 UTC; the requester cannot confirm alone."""
    bot = build(slack, sandbox, redis_url, seatbot_timezone="Europe/Paris", seatbot_two_person=True)
    try:
        day = datetime.fromtimestamp(time.time() + 5 * 86400, UTC).date().isoformat()
        card = await card_for(bot, f"revoke {ALICE} --at {day}T17:00")
        text = all_text(card)
        utc = datetime.fromisoformat(f"{day}T17:00").replace(tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)
        assert f"{day} 17:00:00 Europe/Paris ({utc:%Y-%m-%d %H:%M:%S} UTC)" in text
        pending = button(card, "seat_confirm")["value"]
        _, key = await bot.click("seat_confirm", pending, user=ADMIN)
        (refusal,) = await slack.wait_responses(key, 1)
        assert "Two-person rule" in refusal["text"]
        _, key = await bot.click("seat_confirm", pending, user=ADMIN2)
        (reply,) = await slack.wait_responses(key, 1)
        assert "scheduled for" in reply["text"] and sandbox.patches == []
    finally:
        await bot.aclose()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("yesterday", "not a date-time"),
        ("2020-01-01T10:00Z", "in the past"),
        ("in 31d", "more than 30 days"),
        ("2026-13-01T10:00", "not a date-time"),
        ("2026-12-04", "not a date-time"),
    ],
)
def test_bad_times_are_refused(text: str, error: str) -> None:
    """Unparseable, past and too-far times each get a clear error."""
    with pytest.raises(ParseError, match=error):
        resolve_at(text, now=datetime(2026, 11, 29, tzinfo=UTC).timestamp(), tz="UTC")


def test_times_parse_with_zone_offset_and_relative() -> None:
    """No offset → SEATBOT_TIMEZONE; `Z` and offsets are honoured; `in 2h` counts from now."""
    now = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
    paris = resolve_at("2026-12-04T17:00", now=now, tz="Europe/Paris")
    assert paris == datetime(2026, 12, 4, 16, tzinfo=UTC).timestamp()
    assert resolve_at("2026-12-04T17:00:05Z", now=now, tz="Europe/Paris") == paris + 3605
    assert resolve_at("2026-12-04T17:00+02:00", now=now, tz="UTC") == paris - 3600
    assert resolve_at("in 2h", now=now, tz="UTC") == now + 7200
    assert resolve_at("in 30m", now=now, tz="UTC") == now + 1800


async def test_bad_time_makes_no_cloudflare_call(slack: FakeSlack, sandbox: Sandbox, redis_url: str) -> None:
    """`--at` in the past is refused before any look-up."""
    bot = build(slack, sandbox, redis_url)
    try:
        reply = await card_for(bot, f"revoke {ALICE} --at 2020-01-01T00:00Z")
        assert "in the past" in reply["text"] and sandbox.requests == []
    finally:
        await bot.aclose()


async def test_a_firing_lease_makes_a_second_run_wait_and_a_dead_run_retry(
    redis_client: aredis.Redis,
) -> None:
    """Two runs of one job: the second finds it busy; if the first died, a run after its lease fires."""
    from bot.domain.models import Pending, PendingTarget
    from bot.state.schedules import Entry, ScheduleStore

    store = ScheduleStore(redis_client)
    target = PendingTarget(label=ALICE, seat_uid="c6edcb67-0714-5d82-ab67-eac89e8458f6", email=ALICE)
    pending = Pending("a" * 32, ADMIN, CHANNEL, [target], None, 0.0, 600.0, at=100.0)
    entry = Entry(id="b" * 32, pending=pending, at=100.0, confirmer=ADMIN2, scheduled_at=0.0)
    assert await store.add(entry) == ("added", entry.id)
    again = Entry(id="c" * 32, pending=pending, at=200.0, confirmer=ADMIN2, scheduled_at=0.0)
    assert await store.add(again) == ("duplicate", entry.id)  # one pending schedule per seat
    status, claimed = await store.claim_firing(entry.id, now=100.0, lease=60)
    assert status == "claimed" and claimed is not None and claimed.confirmer == ADMIN2
    assert (await store.claim_firing(entry.id, now=130.0, lease=60))[0] == "busy"
    assert (await store.remove(entry.id, now=130.0, mode="cancel"))[0] == "firing"  # too late to cancel
    assert (await store.claim_firing(entry.id, now=161.0, lease=60))[0] == "claimed"  # the first died
    assert (await store.remove(entry.id, now=170.0, mode="done"))[0] == "removed"
    assert (await store.claim_firing(entry.id, now=171.0, lease=60))[0] == "missing"
    assert await store.holders([target.seat_uid]) == {}  # the seat can be scheduled again
