"""Wiring: build the flow and its parts from Settings, once per process."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.audit import Audit
from bot.cloudflare import CloudflareClient
from bot.config import Settings
from bot.flow import SeatFlow
from bot.pending import PendingStore
from bot.policy import Authorizer, Directory, Policy
from bot.sandbox import DEMO_ACCOUNT_ID, DEMO_TOKEN, Sandbox

log = logging.getLogger("seatbot.runtime")


def connect_redis(settings: Settings, *, warn_in_process: bool = True) -> aredis.Redis:
    """redis:// or rediss:// with short timeouts (Slack waits for nobody); in-process when unset."""
    if settings.redis_url is None or not settings.redis_url.get_secret_value():
        import fakeredis

        if warn_in_process:
            log.warning("REDIS_URL is not set: confirmations live in this process only (in-process store)")
        return fakeredis.FakeAsyncRedis()
    timeout = settings.redis_timeout_seconds
    url = settings.redis_url.get_secret_value()
    kwargs: dict[str, Any] = {}
    if url.startswith("rediss://") and settings.redis_tls_insecure:
        kwargs.update(ssl_cert_reqs="none", ssl_check_hostname=False)
    return aredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One quick reconnect covers a pooled connection that died with a Redis restart.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
        **kwargs,
    )


async def redis_status(redis: aredis.Redis) -> str:
    try:
        await redis.ping()
    except (RedisError, OSError):
        return "unreachable"
    return "ok"


@dataclass
class Runtime:
    settings: Settings
    redis: aredis.Redis
    seats: CloudflareClient
    flow: SeatFlow
    sandbox: Sandbox | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def in_process_store(self) -> bool:
        return self.settings.redis_url is None

    async def aclose(self) -> None:
        for close in self.closers:
            await close()
        await self.seats.aclose()
        await self.redis.aclose()


def build_runtime(
    settings: Settings,
    *,
    directory: Directory,
    seats_transport: httpx.AsyncBaseTransport | None = None,
    allow_sandbox: bool = False,
) -> Runtime:
    """The flow with Cloudflare (or, with `allow_sandbox` and no credentials, the sandbox)."""
    sandbox = None
    if settings.has_cloudflare_credentials or not allow_sandbox:
        seats = CloudflareClient.from_settings(settings, transport=seats_transport)
    else:
        sandbox = Sandbox()
        seats = CloudflareClient(
            account_id=DEMO_ACCOUNT_ID,
            auth_headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
            base_url=sandbox.base_url,
            transport=sandbox.transport(),
        )
    redis = connect_redis(settings, warn_in_process=not allow_sandbox)
    policy = Policy.from_settings(settings)
    flow = SeatFlow(
        seats=seats,
        store=PendingStore(redis),
        audit=Audit(redis, maxlen=settings.seatbot_audit_maxlen),
        directory=directory,
        authorizer=Authorizer(policy, directory, cache_seconds=settings.seatbot_group_cache_seconds),
        lookup_concurrency=settings.cloudflare_lookup_concurrency,
    )
    return Runtime(settings, redis, seats, flow, sandbox)
