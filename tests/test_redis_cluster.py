"""The bot on a real 3-node Redis Cluster (REDIS_CLUSTER=true): a revoke, the directory sync, a
scheduled removal and an idle sweep, with saq's job runner on the same cluster.

A script or MULTI over keys of two slots fails there with CROSSSLOT; every key the bot (and saq)
writes is checked to sit in the one slot of the hash tag `{seatbot}`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from bot.devtools.demo_idle import user_at
from bot.devtools.sandbox import Sandbox
from bot.state.audit import STREAM
from bot.state.keys import TAG
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ALICE, SlackClient, all_text, build, button, card_for
from tests.support.redis_topologies import RedisClusterNodes


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes()
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def bot(cluster: RedisClusterNodes, slack: FakeSlack, sandbox: Sandbox) -> AsyncIterator[SlackClient]:
    """The web app on the cluster (empty: flushed node by node; these nodes are the test's own)."""
    with cluster.client() as client:
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    app = build(slack, sandbox, cluster.url, redis_cluster=True)
    await app.app.state.runtime.start_jobs()  # what the ASGI lifespan does in a served process
    yield app
    await app.aclose()


def keys_outside_the_slot(cluster: RedisClusterNodes) -> list[str]:
    """Every key on the cluster whose slot is not `{seatbot}`'s (there must be none)."""
    with cluster.client() as client:
        slot = client.keyslot(TAG)
        found = [k.decode() for k in client.scan_iter(target_nodes=redis.RedisCluster.PRIMARIES)]
        return [k for k in found if client.keyslot(k) != slot]


async def audit_events(cluster: RedisClusterNodes) -> list[str]:
    client = RedisCluster.from_url(cluster.url)
    try:
        rows = await client.xrange(STREAM) or []
        return [json.loads((data or {})[b"json"])["event"] for _, data in rows]
    finally:
        await client.aclose()


async def confirm(bot: SlackClient, card: dict[str, Any], count: int) -> list[dict[str, Any]]:
    response, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    assert response.status_code == 200
    return await bot.slack.wait_responses(key, count, timeout=15)


async def test_a_revoke_acts_once_and_every_key_is_in_one_slot(
    bot: SlackClient, sandbox: Sandbox, cluster: RedisClusterNodes
) -> None:
    """The card, its claim (a Lua script over two keys), the PATCH, the audit; a second click is refused."""
    card = await card_for(bot, f"revoke {ALICE} --reason left")
    posts = await confirm(bot, card, 3)
    assert "access ✗ / gateway ✗" in all_text(posts[1]) and len(sandbox.patches) == 1
    _, again = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    assert "already handled" in (await bot.slack.wait_responses(again, 1))[0]["text"]
    assert len(sandbox.patches) == 1
    assert {"requested", "succeeded"} <= set(await audit_events(cluster))
    assert keys_outside_the_slot(cluster) == []


async def test_the_directory_syncs_and_answers_uid_lookups(
    bot: SlackClient, sandbox: Sandbox, cluster: RedisClusterNodes
) -> None:
    """The job runner's first sync (build keys, then one swap script over 4,096 bucket keys), a
    `/seat sync` after it, and a look-up answered from the directory."""
    sandbox.synthetic.resize(300)
    async with asyncio.timeout(15):
        while (await bot.http.get("/healthz")).json()["directory"]["state"] != "ready":
            await asyncio.sleep(0.05)
    synced = await card_for(bot, "sync")
    assert "Directory synced" in synced["text"], synced["text"]
    uid = next(u["seat_uid"] for u in sandbox.users.values() if u["email"] == ALICE)
    status = all_text(await card_for(bot, f"status {uid}"))
    assert ALICE in status and "seat directory (synced" in status
    assert keys_outside_the_slot(cluster) == []


async def test_a_scheduled_removal_fires_once_from_the_job_runner(
    bot: SlackClient, sandbox: Sandbox, cluster: RedisClusterNodes
) -> None:
    """The schedule's scripts and saq's queue (its scripts, MULTI blocks, BLMOVE) on the cluster."""
    due = datetime.fromtimestamp(math.ceil(time.time()) + 2, UTC).isoformat(timespec="seconds")
    card = await card_for(bot, f"revoke {ALICE} --at {due.replace('+00:00', 'Z')}")
    (reply, *_) = await confirm(bot, card, 1)
    assert "scheduled for" in reply["text"] and sandbox.patches == []
    await bot.slack.wait_for(
        lambda: any("Scheduled removal" in str(p.get("text")) for p in bot.slack.posts), timeout=15
    )
    await asyncio.sleep(1)  # a second firing would show by now
    assert len(sandbox.patches) == 1
    assert {"scheduled", "succeeded"} <= set(await audit_events(cluster))
    assert keys_outside_the_slot(cluster) == []


async def test_an_idle_sweep_frees_the_idle_seats(
    bot: SlackClient, sandbox: Sandbox, cluster: RedisClusterNodes
) -> None:
    """The report, the sweep's list beside its card (GETDEL), the chunked PATCH and its audit."""
    now = datetime.now(UTC)
    users = [
        sandbox.add_user(
            user_at(
                f"idle{n}@example.com", last_login=now - timedelta(days=90), created=now - timedelta(days=500)
            )
        )
        for n in range(4)
    ]
    card = await card_for(bot, "idle 30 --reason monthly sweep")
    response, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    assert response.status_code == 200
    await bot.slack.wait_for(
        lambda: any(r.get("response_type") == "in_channel" for r in bot.slack.responses[key]), 15
    )
    outcome = next(r for r in bot.slack.responses[key] if r.get("response_type") == "in_channel")
    assert outcome["text"].startswith("Idle sweep: 4 freed"), outcome["text"]
    assert [u["access_seat"] for u in users] == [False] * 4
    assert keys_outside_the_slot(cluster) == []
