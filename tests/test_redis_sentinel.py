"""The bot behind Redis Sentinel (REDIS_SENTINELS): real Sentinels fail a real primary over.

A failover loses nothing it must keep: the card's claim and its "done" mark reach the replica
before the bot relies on them (WAIT), so a confirm cut by a failover revokes once, a click while
the primary is gone changes nothing, and a claim no replica has is never acted on.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from bot.app.flow import UNAVAILABLE
from bot.config import load_settings
from bot.devtools.sandbox import Sandbox
from bot.errors import ConfigError
from bot.ops.check import run_checks
from bot.state.pending import CLAIMED
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ALICE, SlackClient, all_text, button, card_for, running, settings_for
from tests.support.redis_topologies import SentinelGroup


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    found = SentinelGroup()
    try:
        found.start()
        yield found
    finally:
        found.stop()


@pytest.fixture
async def bot(group: SentinelGroup, slack: FakeSlack, sandbox: Sandbox) -> AsyncIterator[SlackClient]:
    """REDIS_URL carries the database (and would carry the password); its host names the service."""
    url = f"redis://{group.SERVICE}/0"
    async with running(slack, sandbox, url, redis_sentinels=group.addresses) as app:
        yield app


async def redis_check(slack: FakeSlack, sandbox: Sandbox, group: SentinelGroup) -> str:
    """`python -m bot check`'s redis line for this setup."""
    lines: list[str] = []
    settings = settings_for(slack, sandbox, f"redis://{group.SERVICE}/0", redis_sentinels=group.addresses)
    await run_checks(settings, out=lines.append, seconds=2)
    return next(line for line in lines if " redis: " in line)


def audit_on(port: int) -> list[str]:
    rows = redis.Redis(port=port).xrange("{seatbot}:audit") or []
    return [json.loads((data or {})[b"json"])["event"] for _, data in rows]


async def test_a_failover_during_a_confirm_revokes_once_and_the_card_stays_used(
    bot: SlackClient, sandbox: Sandbox, group: SentinelGroup
) -> None:
    """The primary dies while the confirm waits on Cloudflare: one PATCH, the outcome, and on the
    new primary the card is done (the admin's second click is "already handled", no PATCH)."""
    line = await redis_check(bot.slack, sandbox, group)
    where = (
        f"OK   redis: PING ok at the primary of seatbot (Sentinels {group.addresses}), 1 replica connected ("
    )
    assert line.startswith(where), line
    card = await card_for(bot, f"revoke {ALICE}")
    value = button(card, "seat_confirm")["value"]
    sandbox.hold, sandbox.hold_from = asyncio.Event(), len(sandbox.requests)
    response, key = await bot.click("seat_confirm", value)
    assert response.status_code == 200
    async with asyncio.timeout(5):  # the confirm has claimed the card and is at Cloudflare now
        while len(sandbox.requests) <= sandbox.hold_from:
            await asyncio.sleep(0.01)
    group.kill_primary()
    await asyncio.to_thread(group.wait_failover)
    sandbox.hold.set()
    posts = await bot.slack.wait_responses(key, 3, timeout=20)
    assert "access ✗ / gateway ✗" in all_text(posts[1]) and len(sandbox.patches) == 1
    _, again = await bot.click("seat_confirm", value)
    assert "already handled" in (await bot.slack.wait_responses(again, 1))[0]["text"]
    assert len(sandbox.patches) == 1
    assert redis.Redis(port=group.replica).get(CLAIMED + value) == b'{"done": true}'
    assert {"confirmed", "succeeded"} <= set(audit_on(group.replica))
    line = await redis_check(bot.slack, sandbox, group)  # the new primary has no replica left
    assert (
        line.startswith("WARN redis:")
        and "0 replicas connected (Redis" in line
        and "no replica holds" in line
    )


async def test_a_click_while_the_primary_is_gone_changes_nothing_and_the_card_works_after(
    bot: SlackClient, sandbox: Sandbox, group: SentinelGroup
) -> None:
    """Before the Sentinels have promoted the replica: "temporarily unavailable", no PATCH; after
    the failover the same card (replicated) confirms, once."""
    card = await card_for(bot, f"revoke {ALICE}")
    value = button(card, "seat_confirm")["value"]
    group.kill_primary()
    _, key = await bot.click("seat_confirm", value)
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert reply["text"] == UNAVAILABLE and sandbox.patches == []
    await asyncio.to_thread(group.wait_failover)
    _, key = await bot.click("seat_confirm", value)
    posts = await bot.slack.wait_responses(key, 3, timeout=10)
    assert "access ✗ / gateway ✗" in all_text(posts[1]) and len(sandbox.patches) == 1


async def test_a_claim_no_replica_acknowledged_is_not_acted_on(
    bot: SlackClient, sandbox: Sandbox, group: SentinelGroup
) -> None:
    """The replica is frozen: the claim cannot be made safe, so no PATCH (a failover now would
    bring the card back unclaimed, and a second click would revoke again)."""
    card = await card_for(bot, f"revoke {ALICE}")
    replica = group.procs[group.replica]
    replica.send_signal(signal.SIGSTOP)
    try:
        _, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
        (reply,) = await bot.slack.wait_responses(key, 1)
    finally:
        replica.send_signal(signal.SIGCONT)
    assert reply["text"] == UNAVAILABLE and sandbox.patches == []


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"REDIS_SENTINELS": "10.0.0.5:26379"}, "REDIS_SENTINELS needs REDIS_URL too"),
        ({"REDIS_SENTINELS": "10.0.0.5", "REDIS_URL": "redis://m/0"}, "`10.0.0.5` is not host:port"),
        (
            {"REDIS_SENTINELS": "10.0.0.5:26379", "REDIS_CLUSTER": "true", "REDIS_URL": "redis://m/0"},
            "REDIS_CLUSTER and REDIS_SENTINELS: set one",
        ),
        ({"REDIS_CLUSTER": "true"}, "REDIS_CLUSTER needs REDIS_URL too"),
    ],
)
def test_topology_settings_are_checked_at_start(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], error: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=error):
        load_settings()
