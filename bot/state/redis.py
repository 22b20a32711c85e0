"""The Redis connection: short timeouts (Slack waits for nobody), or an in-process store when unset."""

from __future__ import annotations

import logging
from typing import Any, cast

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import Settings

log = logging.getLogger("seatbot.redis")


def connect_redis(
    settings: Settings, *, warn_in_process: bool = True, retries: int = 1, timeout: float | None = None
) -> aredis.Redis:
    """redis:// or rediss:// with short timeouts (a cluster client with REDIS_CLUSTER); the in-process
    store (same Lua) when REDIS_URL is unset."""
    url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    if not url:
        import fakeredis

        if warn_in_process:
            log.warning("REDIS_URL is not set: confirmations live in this process only (in-process store)")
        return fakeredis.FakeAsyncRedis()
    kwargs: dict[str, Any] = {}
    timeout = timeout or settings.redis_timeout_seconds  # the job runner's blocking reads wait longer
    if url.startswith("rediss://") and settings.redis_tls_insecure:
        kwargs.update(ssl_cert_reqs="none", ssl_check_hostname=False)
    elif url.startswith("rediss://") and settings.redis_tls_ca_file is not None:
        kwargs.update(ssl_ca_certs=str(settings.redis_tls_ca_file))  # verified, hostname included
    kwargs.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One quick reconnect covers a pooled connection that died with a Redis restart.
        retry=Retry(NoBackoff(), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )
    if settings.redis_cluster:
        # Every key the bot uses is in one hash slot (bot/state/keys.py), so its scripts and MULTI
        # blocks run as on one Redis; the cluster client follows MOVED and failovers. It speaks the
        # same commands, hence typed as the plain client the stores expect.
        return cast(aredis.Redis, RedisCluster.from_url(url, **kwargs))
    return aredis.Redis.from_url(url, **kwargs)


async def redis_status(redis: aredis.Redis) -> str:
    try:
        await redis.ping()
    except (RedisError, OSError):
        return "unreachable"
    return "ok"
