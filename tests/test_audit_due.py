"""Issue 17 §3: every audit event's `at` is when it happened; a scheduled removal's time is `due`."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import redis.asyncio as aredis

from bot.state.audit import STREAM, Audit
from tests.support.flow import audit_events
from tests.support.harness import ADMIN, ALICE, SlackClient, all_text, button, card_for

HOUR = 3600


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def date_token(ts: float) -> str:
    """How /seat audit writes a time: Slack's date token for it."""
    return f"<!date^{int(ts)}^"


async def test_requested_and_scheduled_events_keep_their_time_and_the_due_time_apart(
    bot: SlackClient, redis_client: aredis.Redis
) -> None:
    """`/seat revoke … --at <in an hour>`, confirmed: both events happened now and are due in an hour,
    and /seat audit shows them now, with the due time."""
    due = math.ceil(time.time()) + HOUR
    before = time.time()
    card = await card_for(bot, f"revoke {ALICE} --at {iso(due)}")
    response, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"], user=ADMIN)
    assert response.status_code == 200
    await bot.slack.wait_responses(key, 1)
    events = {e["event"]: e for e in await audit_events(redis_client)}
    for name in ("requested", "scheduled"):
        assert before - 1 <= events[name]["at"] <= time.time() + 1, events[name]
        assert events[name]["due"] == due
    shown = all_text(await card_for(bot, "audit"))
    assert shown.count(f"due {date_token(due)}") == 2
    assert date_token(events["requested"]["at"]) in shown


async def test_an_older_release_s_future_at_is_read_as_written_then_due(redis_client: aredis.Redis) -> None:
    """Events written before this fix kept the due time in `at`: read back, `at` is when the stream
    entry was written and `due` the time that was in `at`; other events are left as they are."""
    due = time.time() + HOUR
    await redis_client.xadd(STREAM, {"json": json.dumps({"event": "scheduled", "at": due, "id": "s1"})})
    await redis_client.xadd(STREAM, {"json": json.dumps({"event": "succeeded", "at": 12.5, "id": "s1"})})
    succeeded, scheduled = await Audit(redis_client).recent(2)
    assert scheduled["due"] == due and abs(scheduled["at"] - time.time()) < 5
    assert succeeded == {"event": "succeeded", "at": 12.5, "id": "s1"}
