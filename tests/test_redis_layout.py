"""The key layout: every key in the `{seatbot}` hash slot, and the move from the names before it.

Layout 1 (before Redis Cluster support) named keys `seatbot:…`. A process of this release moves
them once, before it serves; a card stored by the previous release is then confirmed as usual.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.state.keys import LAYOUT, LAYOUT_KEY, migrate
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, ALICE, CHANNEL, all_text, running

ROOT = Path(__file__).resolve().parents[1]
ALICE_UID = "c6edcb67-0714-5d82-ab67-eac89e8458f6"


def card(card_id: str) -> str:
    now = time.time()
    target = {"label": ALICE, "seat_uid": ALICE_UID, "email": ALICE, "name": "Alice"}
    return json.dumps(
        {"id": card_id, "requester": ADMIN, "channel": CHANNEL, "targets": [target], "reason": None}
        | {"created_at": now, "expires_at": now + 600, "two_person": False, "attempt": 1, "v": 2}
    )


async def test_the_previous_releases_keys_move_once_and_its_card_still_works(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """An upgrade: the card, the audit stream and a TTL'd key move (TTLs kept); the card confirms once."""
    await redis_client.set("seatbot:pending:" + "ab" * 16, card("ab" * 16), ex=600)
    await redis_client.xadd("seatbot:audit", {"json": json.dumps({"event": "requested", "at": 1.0})})
    await redis_client.set("other:app:key", "theirs")  # not ours: left alone
    async with running(slack, sandbox, redis_url) as bot:
        await bot.app.state.runtime.start_jobs()  # what the ASGI lifespan does before serving
        assert await redis_client.get(LAYOUT_KEY) == str(LAYOUT).encode()
        assert await redis_client.keys("seatbot:*") == []
        assert 590 < await redis_client.ttl("{seatbot}:pending:" + "ab" * 16) <= 600
        assert await redis_client.get("other:app:key") == b"theirs"
        _, key = await bot.click("seat_confirm", "ab" * 16)
        posts = await bot.slack.wait_responses(key, 3)
        assert "access ✗ / gateway ✗" in all_text(posts[1]) and len(sandbox.patches) == 1
        rows = await redis_client.xrange("{seatbot}:audit") or []
        events = [json.loads((d or {})[b"json"])["event"] for _, d in rows]
        assert events[0] == "requested" and "succeeded" in events  # the old trail continues
    # Moved once: a key a layout-1 process writes later is not picked up (stop those first).
    await redis_client.set("seatbot:pending:" + "cd" * 16, card("cd" * 16), ex=600)
    assert await migrate(redis_client) == 0
    assert await redis_client.exists("seatbot:pending:" + "cd" * 16) == 1


async def test_a_key_already_under_its_new_name_is_not_overwritten(redis_client: aredis.Redis) -> None:
    await redis_client.set("seatbot:sched:index", "old")
    await redis_client.set("{seatbot}:sched:index", "new")
    await redis_client.set("seatbot:step:" + "ef" * 16, "step")
    assert await migrate(redis_client) == 1
    assert await redis_client.get("{seatbot}:sched:index") == b"new"
    assert await redis_client.get("seatbot:sched:index") == b"old"
    assert await redis_client.get("{seatbot}:step:" + "ef" * 16) == b"step"


def test_no_module_names_a_redis_key_outside_the_hash_slot() -> None:
    """Keys come from bot.state.keys.key(); a literal `seatbot:…` key would land in another slot."""
    literal = re.compile(r"""["']seatbot:[a-z{]""")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert found == []
