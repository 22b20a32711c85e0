"""Cloudflare and the flow on their real seams without Slack or HTTP servers: the sandbox through
httpx's ASGI transport, the real PendingStore and Audit on whatever Redis client the test passes."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

import httpx
import redis.asyncio as aredis

from bot.app.flow import SeatFlow
from bot.app.idle_source import ScanSource
from bot.app.sweep import IdleFlow
from bot.cloudflare.client import CloudflareClient
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.devtools.shell import ShellDirectory
from bot.domain.policy import Authorizer, Policy
from bot.state.audit import NOISE, STREAM, Audit
from bot.state.pending import PendingStore
from bot.state.sweeps import SweepStore
from tests.support.harness import ADMIN, ADMIN2
from tests.support.servers import no_sleep

ADMINS = Policy(admins=frozenset({ADMIN, ADMIN2}))
TOKEN_AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}"}


def sandbox_client(
    sandbox: Sandbox,
    *,
    auth: Mapping[str, str] = TOKEN_AUTH,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Any] = no_sleep,
    **options: Any,
) -> CloudflareClient:
    """A CloudflareClient on the sandbox (or on `transport`) whose retries never really wait."""
    return CloudflareClient(
        account_id=options.pop("account_id", DEMO_ACCOUNT_ID),
        auth_headers=auth,
        base_url=sandbox.base_url,
        transport=transport or sandbox.transport(),
        sleep=sleep,
        **options,
    )


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
    async with sandbox_client(sandbox, chunk_size=chunk_size) as seats:
        yield SeatFlow(
            seats=seats,
            store=PendingStore(redis),
            audit=Audit(redis, clock=clock),
            directory=directory,
            authorizer=Authorizer(policy, directory),
            clock=clock,
        )


def idle_flow(cf: CloudflareClient, redis: aredis.Redis, *, policy: Policy, **options: Any) -> IdleFlow:
    """An IdleFlow scanning Cloudflare through `cf`, its pendings, sweeps and audit on real Redis."""
    return IdleFlow(
        source=ScanSource(cf),
        seats=cf,
        pendings=PendingStore(redis),
        sweeps=SweepStore(redis),
        audit=Audit(redis),
        policy=policy,
        **options,
    )


async def audit_events(redis: aredis.Redis) -> list[dict[str, Any]]:
    """Every event in the audit streams (real events and, kept apart, noise), oldest first."""
    rows: list[tuple[bytes, dict[bytes, bytes]]] = []
    for stream in (STREAM, NOISE):
        rows += cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))

    def order(row: tuple[bytes, dict[bytes, bytes]]) -> tuple[int, ...]:
        return tuple(int(part) for part in row[0].split(b"-"))

    return [json.loads(fields[b"json"]) for _, fields in sorted(rows, key=order)]
