"""An idle sweep's seat list, kept beside its pending confirmation.

The pending record (claimed once by `bot.state.pending`) stays small; the list, which may hold many
thousands of seats, lives under `{seatbot}:sweep:<id>` as compact JSON and outlives the card a little,
so a claimed card always finds its list. Confirming it starts a run (`{seatbot}:sweep:run:<id>`): the
progress is written per chunk, so any process resumes a sweep whose runner died or that the rate
budget paused, from the chunk it was at.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.domain.idle import IdleSeat
from bot.errors import StoreUnavailable
from bot.state.keys import key

PREFIX = key("sweep:")
GRACE_SECONDS = 300  # the list outlives its card by this much


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


# A running sweep: `run:<id>` (hash) holds its plan, the next chunk, the chunk in flight, the lease of
# the runner driving it and its state; `res:<id>` (list) one row per seat decided. Every write checks
# the runner still holds the lease, so a runner that stalled past it never writes over the next one.
RUN = PREFIX + "run:"
RESULTS = PREFIX + "res:"
RUN_TTL = 86_400  # refreshed on every write: a sweep's record outlives its last step by a day

# KEYS run, results, list. ARGV plan, token, until, ttl, result rows…: once per sweep.
_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'plan', ARGV[1], 'next', 0, 'inflight', -1, 'owner', ARGV[2],
  'until', ARGV[3], 'state', 'running', 'rounds', 0)
for i = 5, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[3])
return 1
"""

# KEYS run. ARGV now, token, until. Taken when nobody holds it (a paused sweep, or a dead runner).
_ACQUIRE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', '0'} end
if state == 'done' then return {'done', '0'} end
-- a live runner's lease, or a budget pause's end
local held = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if held > tonumber(ARGV[1]) and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then
  return {'busy', tostring(held)}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'until', ARGV[3], 'state', 'running')
return {'acquired', '0'}
"""

# KEYS run, results. ARGV token, ttl, field/value pairs count n, pairs…, result rows…
_WRITE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') == 'done' then
  return 0
end
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 4 + 2 * n, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Run:
    """A sweep under way, as Redis holds it."""

    plan: SweepList  # the seats still to send (after the last re-check), its card and confirmer
    next: int  # the first chunk of `plan` not yet sent
    inflight: int  # a chunk sent with no answer recorded (its runner stopped), or -1
    state: str  # running | paused | done
    until: float  # the lease of the runner driving it
    rounds: int  # how many times the rate budget paused it
    done: int  # rows recorded so far
    audit_ok: bool = True  # False when a runner could not write a chunk's audit events


class SweepStore:
    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis
        self._start = redis.register_script(_START)
        self._acquire = redis.register_script(_ACQUIRE)
        self._write = redis.register_script(_WRITE)

    async def put(self, pending_id: str, sweep: SweepList, *, ttl: int) -> None:
        await self._set(PREFIX + pending_id, sweep, ttl + GRACE_SECONDS)

    async def get(self, pending_id: str) -> SweepList | None:
        """The list a card shows (None: expired); it goes when its sweep starts."""
        try:
            raw = await self._redis.get(PREFIX + pending_id)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return SweepList.loads(raw) if raw else None

    async def start(
        self, pending_id: str, plan: SweepList, rows: list[str], *, token: str, until: float
    ) -> bool:
        """Turn a card's list into a running sweep, once (False: it was started already)."""
        keys = [RUN + pending_id, RESULTS + pending_id, PREFIX + pending_id]
        return bool(await self._call(self._start, keys, [plan.dumps(), token, until, RUN_TTL, *rows]))

    async def acquire(self, pending_id: str, *, token: str, now: float, until: float) -> tuple[str, float]:
        """('acquired', 0), ('busy', the holder's lease), ('done', 0) or ('missing', 0)."""
        status, value = await self._call(self._acquire, [RUN + pending_id], [now, token, until])
        return _text(status), float(_text(value))

    async def write(
        self,
        pending_id: str,
        *,
        token: str,
        fields: Mapping[str, str | int | float],
        rows: Sequence[str] = (),
    ) -> bool:
        """Set `fields` and append `rows` if `token` still drives the sweep (False: it lost it)."""
        pairs = [x for k, v in fields.items() for x in (k, v)]
        args = [token, RUN_TTL, len(fields), *pairs, *rows]
        return bool(await self._call(self._write, [RUN + pending_id, RESULTS + pending_id], args))

    async def run(self, pending_id: str) -> Run | None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(RUN + pending_id)
                pipe.llen(RESULTS + pending_id)
                raw, count = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        if not raw:
            return None
        h = {_text(k): _text(v) for k, v in raw.items()}
        return Run(
            SweepList.loads(h["plan"]),
            int(h["next"]),
            int(h["inflight"]),
            h["state"],
            float(h["until"]),
            int(h["rounds"]),
            int(count),
            h.get("audit_bad") != "1",
        )

    async def rows(self, pending_id: str) -> list[str]:
        try:
            return [_text(r) for r in await self._redis.lrange(RESULTS + pending_id, 0, -1)]
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def _set(self, key: str, sweep: SweepList, ttl: int) -> None:
        try:
            await self._redis.set(key, sweep.dumps(), ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def drop(self, pending_id: str) -> None:
        """A cancelled sweep's list goes with its card."""
        with contextlib.suppress(RedisError):  # else it expires on its own
            await self._redis.delete(PREFIX + pending_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
