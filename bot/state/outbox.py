"""Messages Slack would not take (outcomes, audit-channel copies, scheduled-removal news), kept in Redis
until a later try delivers them: one hash, id → JSON, so every process retries the same list.

A retry run holds a short lease so two processes never post the same message at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable
from bot.state.keys import key

log = logging.getLogger("seatbot.outbox")

KEY = key("outbox")
LEASE = key("outbox:lease")


@dataclass(frozen=True)
class Undelivered:
    id: str
    channel: str
    text: str
    blocks: list[dict[str, Any]] | None
    what: str  # "outcome", "audit channel copy", "scheduled removal news", …
    why: str  # Slack's last answer
    kept_at: float
    tries: int = 1


class OutboxStore:
    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis

    async def keep(self, item: Undelivered) -> None:
        """Store (or update) one message; StoreUnavailable when Redis cannot take it either."""
        try:
            await self._redis.hset(KEY, item.id, json.dumps(asdict(item)))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def retried(self, item: Undelivered, why: str) -> None:
        """One more failed try: counted, with Slack's newest answer (only if it is still kept)."""
        updated = replace(item, why=why, tries=item.tries + 1)
        try:
            if await self._redis.hexists(KEY, item.id):
                await self._redis.hset(KEY, item.id, json.dumps(asdict(updated)))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def done(self, item_id: str) -> None:
        try:
            await self._redis.hdel(KEY, item_id)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def items(self) -> list[Undelivered]:
        """Every kept message, oldest first."""
        try:
            raw = await self._redis.hvals(KEY)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        found = []
        for value in raw:
            try:
                found.append(Undelivered(**json.loads(value)))
            except (TypeError, ValueError):
                log.error("an unreadable undelivered message is kept in Redis (%s)", KEY)
        return sorted(found, key=lambda item: item.kept_at)

    async def lease(self, token: str, seconds: float) -> bool:
        """True when this run may retry the list now (no other run holds it)."""
        try:
            return bool(await self._redis.set(LEASE, token, nx=True, px=int(seconds * 1000)))
        except RedisError:
            return False

    async def release(self, token: str) -> None:
        try:
            if (await self._redis.get(LEASE)) in (token, token.encode()):
                await self._redis.delete(LEASE)
        except RedisError:
            pass
