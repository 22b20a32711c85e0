"""A Redis stall during a confirm never uses the card up silently: the same admin's retry resumes it."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.app.flow import SeatFlow
from bot.config import Settings
from bot.devtools.sandbox import Sandbox
from bot.devtools.shell import ShellDirectory
from bot.domain.models import Pending, PendingTarget, new_id
from bot.domain.outcomes import Card, Notice, Outcome
from bot.domain.policy import Authorizer
from bot.state.audit import Audit
from bot.state.pending import PendingStore
from bot.state.redis import connect_redis
from tests.support.flow import ADMINS, sandbox_client
from tests.support.harness import ADMIN, ADMIN2, ALICE, CHANNEL
from tests.support.servers import RedisServer


@pytest.fixture
def stallable_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
async def stall_flow(sandbox: Sandbox, stallable_redis: RedisServer) -> AsyncIterator[SeatFlow]:
    """The flow on production's Redis client (short timeouts, one re-send) and a one-second lease."""
    settings = Settings(_env_file=None, redis_url=stallable_redis.url, redis_timeout_seconds=0.3)
    redis = connect_redis(settings)
    directory = ShellDirectory()
    async with sandbox_client(sandbox) as seats:
        yield SeatFlow(
            seats=seats,
            store=PendingStore(redis, lease_seconds=1),
            audit=Audit(redis),
            directory=directory,
            authorizer=Authorizer(ADMINS, directory),
        )
    await redis.aclose()


async def test_retry_after_a_stalled_claim_resumes_the_revoke(
    stall_flow: SeatFlow, sandbox: Sandbox, stallable_redis: RedisServer
) -> None:
    """SIGSTOP during the click: unavailable, no PATCH; after SIGCONT the same admin's retry revokes."""
    card = await stall_flow.command(user=ADMIN, channel=CHANNEL, text=f"revoke {ALICE}")
    assert isinstance(card, Card)
    click = functools.partial(stall_flow.click, action="confirm", pending_id=card.pending.id)
    await click(user=ADMIN, pending_id=new_id())  # a running server has its claim script loaded
    assert stallable_redis.proc is not None
    os.kill(stallable_redis.proc.pid, signal.SIGSTOP)
    stalled = await click(user=ADMIN)
    assert isinstance(stalled, Notice) and stalled.kind == "unavailable"
    os.kill(stallable_redis.proc.pid, signal.SIGCONT)  # the queued claim script runs now
    await asyncio.sleep(0.1)
    assert sandbox.patches == []

    early = await click(user=ADMIN)  # within the lease: said truthfully, nothing done
    assert isinstance(early, Notice) and "click again in 1 seconds" in early.text
    other = await click(user=ADMIN2)  # nobody else may take it over
    assert isinstance(other, Notice) and other.kind in ("expired", "refused")
    await asyncio.sleep(1.1)
    resumed = await click(user=ADMIN)
    assert isinstance(resumed, Outcome) and resumed.results[0].confirmed
    assert len(sandbox.patches) == 1


async def test_double_click_by_the_same_admin_acts_once(stall_flow: SeatFlow, sandbox: Sandbox) -> None:
    """Two quick clicks of one admin: one PATCH, the other click says the first is being handled."""
    card = await stall_flow.command(user=ADMIN, channel=CHANNEL, text=f"revoke {ALICE}")
    assert isinstance(card, Card)
    sandbox.latency = 0.2
    click = functools.partial(stall_flow.click, action="confirm", pending_id=card.pending.id, user=ADMIN)
    first, second = await asyncio.gather(click(), click())
    kinds = sorted(type(r).__name__ for r in (first, second))
    assert kinds == ["Notice", "Outcome"]
    late = await click()  # after the outcome: the card is used up, said plainly
    assert isinstance(late, Notice) and late.kind == "expired"
    assert len(sandbox.patches) == 1


async def test_claim_marker_is_idempotent_and_only_the_owner_resumes(stallable_redis: RedisServer) -> None:
    """Same nonce: claimed again; same admin, new click: busy during the lease; another admin: missing."""
    settings = Settings(_env_file=None, redis_url=stallable_redis.url)
    redis = connect_redis(settings)
    store = PendingStore(redis, lease_seconds=60)
    pending = Pending(new_id(), "U1", "C1", [PendingTarget("x", "seat-1")], None, 0.0, 60.0)
    await store.put(pending, ttl=60)
    claim = functools.partial(
        store.claim, pending.id, action="confirm", clicker_is_admin=True, two_person=False
    )
    first = await claim(clicker="U1", nonce="n1")
    again = await claim(clicker="U1", nonce="n1")
    busy = await claim(clicker="U1", nonce="n2")
    other = await claim(clicker="U2", nonce="n3")
    assert (first.status, again.status, busy.status, other.status) == (
        "claimed",
        "claimed",
        "busy",
        "missing",
    )
    assert again.pending == first.pending == pending and 55 <= busy.wait <= 60
    await redis.aclose()
