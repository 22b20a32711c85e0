"""An idle sweep's seat list, kept beside its pending confirmation.

The pending record (claimed once by `bot.state.pending`) stays small; the list, which may hold many
thousands of seats, lives under `seatbot:sweep:<id>` as compact JSON and outlives the card a little,
so a claimed card always finds its list. The claimer takes the list with GETDEL: once, like the card.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable
from bot.idle import IdleSeat

PREFIX = "seatbot:sweep:"
GRACE_SECONDS = 300  # the list outlives its card by this much


@dataclass(frozen=True)
class SweepList:
    days: int
    seats: tuple[IdleSeat, ...]

    def dumps(self) -> str:
        return json.dumps({"days": self.days, "seats": [s.row() for s in self.seats]}, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> SweepList:
        data = json.loads(raw)
        return cls(int(data["days"]), tuple(IdleSeat.from_row(row) for row in data["seats"]))


class SweepStore:
    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis

    async def put(self, pending_id: str, sweep: SweepList, *, ttl: int) -> None:
        try:
            await self._redis.set(PREFIX + pending_id, sweep.dumps(), ex=ttl + GRACE_SECONDS)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def take(self, pending_id: str) -> SweepList | None:
        """The list, removed as it is read; None when it is gone (expired, or already taken)."""
        try:
            raw = await self._redis.getdel(PREFIX + pending_id)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return SweepList.loads(raw) if raw else None

    async def drop(self, pending_id: str) -> None:
        """A cancelled sweep's list goes with its card."""
        with contextlib.suppress(RedisError):  # else it expires on its own
            await self._redis.delete(PREFIX + pending_id)
