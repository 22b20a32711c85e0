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
REST = PREFIX + "rest:"
REST_TTL = 86_400


@dataclass(frozen=True)
class SweepList:
    """The seats of a sweep; a paused sweep's rest also carries its card and who confirmed it."""

    days: int
    seats: tuple[IdleSeat, ...]
    pending: str | None = None  # Pending.dumps() of the claimed card (a rest only)
    confirmer: str | None = None
    rounds: int = 0  # how many times the rate budget paused this sweep

    def dumps(self) -> str:
        data = {
            "days": self.days,
            "seats": [s.row() for s in self.seats],
            "pending": self.pending,
            "confirmer": self.confirmer,
            "rounds": self.rounds,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> SweepList:
        data = json.loads(raw)
        seats = tuple(IdleSeat.from_row(row) for row in data["seats"])
        return cls(
            int(data["days"]), seats, data.get("pending"), data.get("confirmer"), int(data.get("rounds", 0))
        )


class SweepStore:
    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis

    async def put(self, pending_id: str, sweep: SweepList, *, ttl: int) -> None:
        await self._set(PREFIX + pending_id, sweep, ttl + GRACE_SECONDS)

    async def take(self, pending_id: str) -> SweepList | None:
        """The list, removed as it is read; None when it is gone (expired, or already taken)."""
        return await self._take(PREFIX + pending_id)

    async def put_rest(self, pending_id: str, sweep: SweepList) -> None:
        """What a paused sweep has left, for the job runner (kept a day: a rest is never dropped silently)."""
        await self._set(REST + pending_id, sweep, REST_TTL)

    async def take_rest(self, pending_id: str) -> SweepList | None:
        """The rest, once: of any number of runners given the same job, one gets it."""
        return await self._take(REST + pending_id)

    async def _set(self, key: str, sweep: SweepList, ttl: int) -> None:
        try:
            await self._redis.set(key, sweep.dumps(), ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def _take(self, key: str) -> SweepList | None:
        try:
            raw = await self._redis.getdel(key)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return SweepList.loads(raw) if raw else None

    async def drop(self, pending_id: str) -> None:
        """A cancelled sweep's list goes with its card."""
        with contextlib.suppress(RedisError):  # else it expires on its own
            await self._redis.delete(PREFIX + pending_id)
