"""A scheduled removal tells the truth at any account size: it finds the seat through the verified
look-up (never a page-capped scan that calls "not seen" gone), says when a person holds a new seat,
when the seat no longer exists, when a firing after a crash finds its own earlier change, and how late
it ran."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aredis

from bot.devtools.demo_account import demo_user
from bot.devtools.sandbox import Sandbox
from bot.devtools.synthetic import synthetic_email, synthetic_uid
from bot.domain.models import SeatUpdate
from tests.support.fake_slack import FakeSlack
from tests.support.flow import audit_events
from tests.support.harness import ADMIN, ALICE, all_text, build, button
from tests.test_schedule import alice_uid, blocks_of, iso_in, schedule, started, wait_fired

OFF = {"seatbot_directory_refresh_seconds": 0}  # no seat directory: what the firing used to rely on


async def events(redis_client: aredis.Redis) -> list[str]:
    return [e["event"] for e in await audit_events(redis_client)]


async def test_a_seat_after_the_first_5000_users_is_patched_at_its_time(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """8,000 users, no directory, the target is user 6,000: the PATCH goes out at the time (the
    firing used to scan 50 pages, miss the seat and announce "already removed")."""
    sandbox.synthetic.resize(8000)
    bot = await started(build(slack, sandbox, redis_url, **OFF))
    try:
        await schedule(bot, f"{synthetic_email(6000)} --at {iso_in(2)}")
        (post,) = await wait_fired(slack)
        assert [p.body for p in sandbox.patches] == [
            [{"seat_uid": synthetic_uid(6000), "access_seat": False, "gateway_seat": False}]
        ]
        assert sandbox.find_user(synthetic_uid(6000))["access_seat"] is False  # type: ignore[index]
        assert "done: 1 seat(s) revoked" in post["text"] and "already removed" not in blocks_of(post)
        found = await events(redis_client)
        assert "succeeded" in found and "already_removed" not in found
    finally:
        await bot.aclose()


async def test_a_person_re_created_with_a_new_seat_is_named_not_called_removed(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Alice is deleted and re-created (new seat UID, active) after the removal was scheduled: the
    post says her scheduled seat is gone and she holds a new one that was NOT removed, and offers a
    card for the new seat; one admin click on it removes it."""
    bot = await started(build(slack, sandbox, redis_url))
    try:
        old = alice_uid(sandbox)
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        sandbox.remove_user(old)
        new = "5eed0000-0000-4000-8000-00000000a11c"
        sandbox.add_user(demo_user(ALICE, "Alice Again", index=90) | {"seat_uid": new})
        (post,) = await wait_fired(slack)
        text = blocks_of(post)
        assert sandbox.patches == []
        assert "already removed" not in text and "done: 1" not in post["text"]
        assert "no longer theirs" in text and new in text and "Not removed" in text
        found = await events(redis_client)
        assert "already_removed" not in found and "succeeded" not in found
        offer = button({"blocks": json.loads(text)}, "seat_confirm")
        _, key = await bot.click("seat_confirm", offer["value"], user=ADMIN)
        await slack.wait_for(lambda: "revoked" in all_text(slack.responses[key]))
        assert [p.body[0]["seat_uid"] for p in sandbox.patches] == [new]
    finally:
        await bot.aclose()


async def test_a_deleted_user_is_reported_as_no_longer_existing(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """The user is deleted before the time: nothing to send, and the post says the seat no longer
    exists (a complete listing shows nobody holds it), not that it was "already removed"."""
    bot = await started(build(slack, sandbox, redis_url))
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        sandbox.remove_user(alice_uid(sandbox))
        (post,) = await wait_fired(slack)
        assert sandbox.patches == [] and "the user was deleted" in blocks_of(post)
        assert "already removed" not in blocks_of(post)
        assert "already_removed" not in await events(redis_client)
    finally:
        await bot.aclose()


async def test_a_look_up_that_cannot_finish_is_a_failure_not_a_removal(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """User 6,000 of 8,000 changes email after scheduling and there is no directory: the 50-page scan
    cannot see the seat. Nothing is sent, nothing is called removed: the post says the look-up could
    not be completed and offers a try-again card."""
    sandbox.synthetic.resize(8000)
    bot = await started(build(slack, sandbox, redis_url, seatbot_schedule_retry_seconds=0.3, **OFF))
    bot.app.state.runtime.schedules.retry_delay = 0.1
    try:
        await schedule(bot, f"{synthetic_email(6000)} --at {iso_in(2)}")
        sandbox.synthetic.update(synthetic_uid(6000), email="renamed@example.com")
        (post,) = await wait_fired(slack, timeout=20)
        text = blocks_of(post)
        assert sandbox.patches == [] and "failed after" in post["text"]
        assert "could not be completed" in text and "already removed" not in text
        assert button({"blocks": json.loads(text)}, "seat_confirm")["value"]
        assert "already_removed" not in await events(redis_client)
    finally:
        await bot.aclose()


async def entry_id(bot: Any) -> str:
    (entry,) = await bot.app.state.runtime.schedules.store.upcoming()
    return str(entry.id)


async def test_a_firing_after_a_crash_says_the_seat_was_removed_at_the_time(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """A firing sent the PATCH (Cloudflare applied it) and its process died before recording it. The
    next firing finds the seat removed: it says it was removed by the firing at the due time and is
    confirmed now, and audits the change as succeeded (never "already removed before the time")."""
    bot = build(slack, sandbox, redis_url)  # no job runner: this test fires by hand
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        schedules = bot.app.state.runtime.schedules
        sid = await entry_id(bot)
        # the first firing: claims, notes the PATCH, Cloudflare applies it; then the process dies
        status, entry = await schedules.store.claim_firing(sid, now=time.time(), lease=-1, token="dead")
        assert status == "claimed" and entry is not None
        await schedules.store.mark_sent(sid, now=entry.at)
        await schedules.flow.seats.update_seats([SeatUpdate(seat_uid=alice_uid(sandbox))])
        fired = await schedules.fire(sid)
        assert fired is not None and len(sandbox.patches) == 1  # not sent again
        (post,) = await wait_fired(slack)
        text = blocks_of(post)
        assert "done: 1 seat(s) revoked" in post["text"] and "removed by the firing at" in text
        assert "confirmed now" in text and "already removed" not in text
        (done,) = [e for e in await audit_events(redis_client) if e["event"] == "succeeded"]
        assert float(done["sent_at"]) == entry.at and done["confirmed_at"]
        assert "already_removed" not in await events(redis_client)
    finally:
        await bot.aclose()


async def test_a_late_firing_says_how_late(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Fired 3 minutes after its time (every runner was down): the post and the audit say so."""
    bot = build(slack, sandbox, redis_url)
    try:
        await schedule(bot, f"{ALICE} --at {iso_in(2)}")
        schedules = bot.app.state.runtime.schedules
        sid = await entry_id(bot)
        (entry,) = await schedules.store.get_many([sid])
        schedules._clock = lambda: entry.at + 183
        await schedules.fire(sid)
        (post,) = await wait_fired(slack)
        assert "ran 3 min 3 s late" in blocks_of(post) and len(sandbox.patches) == 1
        (done,) = [e for e in await audit_events(redis_client) if e["event"] == "succeeded"]
        assert float(done["late_by"]) == 183.0
    finally:
        await bot.aclose()
