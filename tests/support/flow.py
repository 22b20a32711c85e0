"""The flow on its real seams without Slack or HTTP servers: the sandbox through httpx's ASGI
transport, the real PendingStore and Audit on whatever Redis client the test passes."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import redis.asyncio as aredis

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.sandbox import DEMO_ACCOUNT_ID, DEMO_TOKEN, Sandbox
from bot.flow import SeatFlow
from bot.policy import Authorizer, Policy
from bot.shell import ShellDirectory
from bot.state.audit import STREAM, Audit
from bot.state.pending import PendingStore
from tests.support.harness import ADMIN, ADMIN2
from tests.support.servers import no_sleep

ADMINS = Policy(admins=frozenset({ADMIN, ADMIN2}))


@contextlib.asynccontextmanager
async def seat_flow(
    sandbox: Sandbox,
    redis: aredis.Redis,
    *,
    policy: Policy = ADMINS,
    chunk_size: int = 50,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[SeatFlow]:
    """A SeatFlow as production wires it (directory: the shell's demo people), closed afterwards."""
    directory = ShellDirectory()
    async with CloudflareClient(
        account_id=DEMO_ACCOUNT_ID,
        auth_headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        base_url=sandbox.base_url,
        transport=sandbox.transport(),
        chunk_size=chunk_size,
        sleep=no_sleep,
    ) as seats:
        yield SeatFlow(
            seats=seats,
            store=PendingStore(redis),
            audit=Audit(redis, clock=clock),
            directory=directory,
            authorizer=Authorizer(policy, directory),
            clock=clock,
        )


async def audit_events(redis: aredis.Redis) -> list[dict[str, Any]]:
    """Every event in the audit stream, oldest first."""
    rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(STREAM))
    return [json.loads(fields[b"json"]) for _, fields in rows]
