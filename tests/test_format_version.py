"""Stored cards across releases (a rolling deploy): hand-written records in real Redis.

A card whose format version this release does not know, or that cannot be read, is answered
"outdated": used up, never acted on, never a 500. A card of the previous format still works.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.domain.models import FORMAT_VERSION, Pending
from bot.errors import OutdatedRecord
from bot.state.pending import _CLAIM, CLAIMED, PREFIX
from bot.state.schedules import INDEX
from bot.state.schedules import PREFIX as SCHEDULED
from tests.support.flow import audit_events
from tests.support.harness import ADMIN, ALICE, CHANNEL, SlackClient, all_text

ALICE_UID = "c6edcb67-0714-5d82-ab67-eac89e8458f6"


def record(**changes: Any) -> dict[str, Any]:
    """A card as the previous release (format 1, with scheduled removals) wrote it, then `changes`."""
    now = time.time()
    card = {
        "id": "ab" * 16,
        "requester": ADMIN,
        "channel": CHANNEL,
        "targets": [{"label": ALICE, "seat_uid": ALICE_UID, "email": ALICE, "name": "Alice"}],
        "reason": None,
        "created_at": now,
        "expires_at": now + 600,
        "two_person": False,
        "attempt": 1,
        "sweep": 0,
        "at": None,
        "tz": "UTC",
        "v": 1,
    }
    return {**card, **changes}


UNUSABLE = {
    "a newer release's card": json.dumps(record(v=FORMAT_VERSION + 1, approval={"by": "U9"})),
    "a card from before version 1": json.dumps(record(v=0)),
    "a field this release does not know": json.dumps(record(workflow_token="xwfp-1")),
    "a field of the wrong type": json.dumps(record(v=FORMAT_VERSION, targets="alice")),
    "not JSON": "{'v': 2,",
    "no version": json.dumps({k: v for k, v in record().items() if k != "v"}),
}


@pytest.mark.parametrize("raw", UNUSABLE.values(), ids=UNUSABLE.keys())
async def test_a_card_this_release_cannot_read_is_outdated_and_never_acted_on(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis, raw: str
) -> None:
    """Confirm on it: a clear "outdated" answer (no error, no 500), no Cloudflare call, used up."""
    await redis_client.set(PREFIX + "ab" * 16, raw, ex=60)
    response, key = await bot.click("seat_confirm", "ab" * 16)
    assert response.status_code == 200
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert "another version of the bot" in reply["text"] and "Run the command again" in reply["text"]
    assert sandbox.requests == []
    assert await redis_client.exists(PREFIX + "ab" * 16) == 0
    _, again = await bot.click("seat_confirm", "ab" * 16)  # used up: nothing is left to act on
    assert "already handled" in (await bot.slack.wait_responses(again, 1))[0]["text"]
    assert sandbox.requests == []
    assert "outdated" in [e["event"] for e in await audit_events(redis_client)]


async def test_a_card_of_the_previous_format_still_works(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """Format 1's fields are all in 2 (a missing one means what 1 meant): confirmed, revoked once."""
    old = {k: v for k, v in record().items() if k not in ("at", "tz", "sweep")}  # an older 1 too
    await redis_client.set(PREFIX + "ab" * 16, json.dumps(old), ex=60)
    _, key = await bot.click("seat_confirm", "ab" * 16)
    posts = await bot.slack.wait_responses(key, 3)
    assert "access ✗ / gateway ✗" in all_text(posts[1]) and len(sandbox.patches) == 1


async def test_the_previous_release_refuses_a_card_of_this_one(redis_client: aredis.Redis) -> None:
    """A process of format 2 still running mid-deploy: it answers this release's card "outdated"."""
    card = Pending.loads(json.dumps(record()))  # as this release stores it
    assert card.v == FORMAT_VERSION == 3
    await redis_client.set(PREFIX + card.id, card.dumps(), ex=60)
    claim = redis_client.register_script(_CLAIM)
    # the arguments a format-2 release sends: its own version, its oldest readable one
    status, _ = await claim(
        keys=[PREFIX + card.id, CLAIMED + card.id], args=[ADMIN, "confirm", 1, 2, 0, "n" * 32, 90, 1]
    )
    assert status == b"outdated" and await redis_client.exists(PREFIX + card.id) == 0


def test_loads_never_raises_anything_but_outdated() -> None:
    """Whatever is stored, `Pending.loads` returns a card or raises OutdatedRecord."""
    for raw in [*UNUSABLE.values(), "null", "[]", '"x"', json.dumps(record(targets=[{"x": 1}]))]:
        with pytest.raises(OutdatedRecord):
            Pending.loads(raw)
    assert Pending.loads(json.dumps(record())).v == FORMAT_VERSION


async def test_a_scheduled_removal_of_another_version_is_listed_and_fired_by_nobody_here(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """A newer release's schedule: `/seat scheduled` still answers; firing it acts on nothing."""
    entry_id = "cd" * 16
    entry = {
        "id": entry_id,
        "pending": record(v=FORMAT_VERSION + 1, at=time.time()),
        "at": time.time(),
        "confirmer": "UADMIN2",
        "scheduled_at": time.time(),
    }
    await redis_client.set(SCHEDULED + entry_id, json.dumps(entry))
    await redis_client.zadd(INDEX, {entry_id: time.time()})
    _, key = await bot.command("scheduled")
    (listing,) = await bot.slack.wait_responses(key, 1)
    assert "No scheduled removals" in all_text(listing)
    schedules = bot.app.state.runtime.schedules
    with pytest.raises(OutdatedRecord):  # saq retries it, maybe on a process of the newer release
        await schedules.fire(entry_id)
    assert sandbox.requests == []
    stored = await redis_client.get(SCHEDULED + entry_id)
    assert stored is not None and "firing_until" not in json.loads(stored)  # left for one that can
