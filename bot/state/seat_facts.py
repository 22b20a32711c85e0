"""Reading the seat directory's facts (`{seatbot}:dir:facts`): what the idle rule needs, per seat UID.

The facts hash is built and swapped in with the rest of the directory (bot.state.directory). A full
read walks it with HSCAN in large batches and checks that no sync swapped in meanwhile (else it reads
again), so a report never mixes two syncs; a re-check reads the asked seats in one HMGET.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.domain.idle import SourceChanged, UserFacts, fact, read_fact, user_from_fact
from bot.domain.models import AccessUser
from bot.errors import StoreUnavailable
from bot.state.directory import FACTS, META

BATCH = 5_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SeatFacts:
    def __init__(self, redis: aredis.Redis, *, batch: int = BATCH) -> None:
        self._redis = redis
        self._batch = batch

    async def scan(self, each: Callable[[Sequence[UserFacts]], None]) -> int:
        """Every seat's facts, batch by batch into `each`; returns the count. SourceChanged if a sync
        swapped in meanwhile (the caller starts over, so a report never mixes two syncs)."""
        try:
            synced = await self._redis.hget(META, "synced_at")
            users = await self._read(each)
            if await self._redis.hget(META, "synced_at") != synced:
                raise SourceChanged("the seat directory was replaced while it was read")
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return users

    async def _read(self, each: Callable[[Sequence[UserFacts]], None]) -> int:
        seen: set[str] = set()  # HSCAN may return a field twice
        cursor = 0
        while True:
            cursor, found = await self._redis.hscan(FACTS, cursor, count=self._batch)
            batch: list[UserFacts] = []
            assert isinstance(found, dict)  # HSCAN without NOVALUES answers field → value
            for raw_uid, raw in found.items():
                uid = _text(raw_uid)
                if uid in seen:
                    continue
                seen.add(uid)
                found_fact = read_fact(uid, raw)
                if found_fact is not None:
                    batch.append(found_fact)
            each(batch)
            if cursor == 0:
                return len(seen)

    async def get(self, seat_uids: Sequence[str]) -> dict[str, AccessUser]:
        """The facts of these seats, in one round trip (seats the directory does not know are absent)."""
        if not seat_uids:
            return {}
        try:
            found = await self._redis.hmget(FACTS, list(seat_uids))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        users = {}
        for uid, raw in zip(seat_uids, found, strict=True):
            user = user_from_fact(uid, raw) if raw is not None else None
            if user is not None:
                users[uid] = user
        return users

    async def freed(self, seat_uids: Sequence[str]) -> None:
        """Seats Cloudflare just confirmed free: the next report must not list them again."""
        with contextlib.suppress(StoreUnavailable, RedisError):  # else the next sync fixes it
            users = await self.get(seat_uids)
            if users:
                free = {"access_seat": False, "gateway_seat": False}
                updates = {uid: fact(u.model_copy(update=free).model_dump()) for uid, u in users.items()}
                await self._redis.hset(FACTS, mapping=updates)  # type: ignore[arg-type]
