"""The Redis connection: short timeouts (Slack waits for nobody), or an in-process store when unset."""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import Settings

log = logging.getLogger("seatbot.redis")


def connect_redis(
    settings: Settings, *, warn_in_process: bool = True, retries: int = 1, timeout: float | None = None
) -> aredis.Redis:
    """redis:// or rediss:// with short timeouts (a cluster client with REDIS_CLUSTER, the primary
    Sentinel names with REDIS_SENTINELS); the in-process store (same Lua) when REDIS_URL is unset."""
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
    if settings.redis_sentinels:
        return _sentinel_primary(settings, url, timeout, kwargs)
    if settings.redis_cluster:
        # Every key the bot uses is in one hash slot (bot/state/keys.py), so its scripts and MULTI
        # blocks run as on one Redis; the cluster client follows MOVED and failovers. It speaks the
        # same commands, hence typed as the plain client the stores expect.
        return cast(aredis.Redis, RedisCluster.from_url(url, **kwargs))
    return aredis.Redis.from_url(url, **kwargs)


def _sentinel_primary(settings: Settings, url: str, timeout: float, kwargs: dict[str, Any]) -> aredis.Redis:
    """A client of the primary Sentinel names: after a failover its connections ask again and
    follow the new primary (redis-py's Sentinel support). REDIS_URL gives the password, database
    and TLS; its host is not dialled."""
    parts = urlsplit(url)
    password = settings.redis_sentinel_password
    sentinel = Sentinel(
        settings.sentinel_addresses,
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "password": password.get_secret_value() if password else None,
        },
    )
    db = parts.path.strip("/")
    primary: aredis.Redis = sentinel.master_for(
        settings.sentinel_service or "",
        redis_class=aredis.Redis,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        db=int(db) if db.isdigit() else 0,
        ssl=parts.scheme == "rediss",
        **kwargs,
    )
    return primary


async def redis_status(redis: aredis.Redis) -> str:
    try:
        await redis.ping()
    except (RedisError, OSError):
        return "unreachable"
    return "ok"
