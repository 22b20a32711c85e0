"""Scheduled removals in Redis: the record, a time index and one lock key per seat.

`{seatbot}:sched:<id>` holds the confirmed card and when it runs; `{seatbot}:sched:index` orders them
by time for `/seat scheduled`; `{seatbot}:sched:seat:<uid>` names the one schedule holding a seat,
so a seat cannot be scheduled twice. Every change is one Lua script, so of any number of
processes exactly one adds, fires or cancels a given schedule. Firing takes a lease instead of
deleting: if the process dies mid-way the lease runs out and the job library's retry fires again
(the seats are looked up again first, so nothing is sent twice that was already done).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.domain.models import FORMAT_VERSION, OLDEST_READABLE, Pending, PendingTarget, valid_id
from bot.errors import OutdatedRecord, StoreUnavailable
from bot.state.keys import key

log = logging.getLogger("seatbot.schedules")

PREFIX = key("sched:")
INDEX = key("sched:index")
SEAT = key("sched:seat:")


@dataclass(frozen=True)
class Entry:
    """One confirmed scheduled removal."""

    id: str
    pending: Pending  # the card that was confirmed: requester = who scheduled it
    at: float
    confirmer: str
    scheduled_at: float
    # when a firing first sent the PATCH (written before sending): a firing after a crash knows the
    # seats it finds removed were removed by that PATCH, at that time
    sent_at: float | None = None
    firing_until: float | None = None  # read only: a firing's lease, kept by the store's scripts

    def dumps(self) -> str:
        data = {**asdict(self), "pending": json.loads(self.pending.dumps())}
        del data["firing_until"]
        return json.dumps(data)

    @classmethod
    def loads(cls, raw: str | bytes) -> Entry:
        try:
            data = json.loads(raw)
            data.pop("firing_by", None)
            data["pending"] = Pending.loads(json.dumps(data["pending"]))
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:  # OutdatedRecord from the card passes as is
            raise OutdatedRecord(f"a scheduled removal that cannot be read ({type(exc).__name__})") from None

    @property
    def seat_uids(self) -> list[str]:
        return [t.seat_uid for t in self.pending.targets]

    @property
    def targets(self) -> list[PendingTarget]:
        return self.pending.targets


# KEYS[1] record, KEYS[2] index, KEYS[3..] seat locks. ARGV: id, raw record, at.
_ADD = """
for i = 3, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then return {'duplicate', holder} end
end
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'added', ARGV[1]}
"""

# KEYS[1] record. ARGV: now, lease seconds, oldest and newest readable format version of its card.
# Takes the firing lease unless another run holds it; a card of a version this release does not
# know is left as it is, unfired, for a release that knows it.
_FIRE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing', false} end
local ok, rec = pcall(cjson.decode, raw)
local v = ok and type(rec) == 'table' and type(rec.pending) == 'table' and tonumber(rec.pending.v)
if not v or v < tonumber(ARGV[3]) or v > tonumber(ARGV[4]) then return {'outdated', false} end
local now = tonumber(ARGV[1])
if rec.firing_until and tonumber(rec.firing_until) > now then return {'busy', false} end
rec.firing_until = now + tonumber(ARGV[2])
rec.firing_by = ARGV[5]
redis.call('SET', KEYS[1], cjson.encode(rec))
return {'claimed', raw}
"""

# KEYS[1] record. ARGV: now, lease seconds, the firing's token. A live firing keeps its lease; one that
# lost it (it stalled past the lease and another run claimed it) hears so.
_RENEW = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.firing_by ~= ARGV[3] then return 0 end
rec.firing_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(rec))
return 1
"""

# KEYS[1] record, KEYS[2] index. ARGV: id, now, mode ('cancel' refuses while firing; 'done' always).
# The seat locks are released here too: their names are in the record.
_REMOVE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing', false} end
local rec = cjson.decode(raw)
if ARGV[3] == 'cancel' and rec.firing_until and tonumber(rec.firing_until) > tonumber(ARGV[2]) then
  return {'firing', raw}
end
for _, t in ipairs(rec.pending.targets) do
  local key = ARGV[4] .. t.seat_uid
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {'removed', raw}
"""

# KEYS[1] record. ARGV: the firing's time. Notes (once) that a PATCH is being sent, keeping the lease.
_SENT = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local rec = cjson.decode(raw)
if rec.sent_at and rec.sent_at ~= cjson.null then return rec.sent_at end
rec.sent_at = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(rec))
return ARGV[1]
"""

AddStatus = Literal["added", "duplicate"]
FireStatus = Literal["claimed", "missing", "busy", "outdated"]
RemoveStatus = Literal["removed", "missing", "firing"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ScheduleStore:
    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis
        self._add = redis.register_script(_ADD)
        self._fire = redis.register_script(_FIRE)
        self._remove = redis.register_script(_REMOVE)
        self._sent = redis.register_script(_SENT)
        self._renew = redis.register_script(_RENEW)

    async def add(self, entry: Entry) -> tuple[AddStatus, str]:
        """Store `entry` unless one of its seats is already scheduled: then ('duplicate', that id)."""
        keys = [PREFIX + entry.id, INDEX, *(SEAT + uid for uid in entry.seat_uids)]
        try:
            status, holder = await self._add(keys=keys, args=[entry.id, entry.dumps(), entry.at])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return _text(status), _text(holder)  # type: ignore[return-value]

    async def holders(self, seat_uids: list[str]) -> dict[str, str]:
        """seat UID → id of the schedule holding it, for the seats that are scheduled."""
        if not seat_uids:
            return {}
        try:
            found = await self._redis.mget([SEAT + uid for uid in seat_uids])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return {uid: _text(v) for uid, v in zip(seat_uids, found, strict=True) if v is not None}

    async def get_many(self, ids: list[str]) -> list[Entry]:
        if not ids:
            return []
        try:
            raws = await self._redis.mget([PREFIX + i for i in ids])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        entries = []
        for entry_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            try:
                entries.append(Entry.loads(raw))
            except OutdatedRecord as exc:  # the release that wrote it lists it
                log.warning("scheduled removal %s cannot be read by this release: %s", entry_id, exc)
        return entries

    async def upcoming(self, limit: int = 200) -> list[Entry]:
        """The pending schedules, soonest first."""
        try:
            ids = await self._redis.zrange(INDEX, 0, limit - 1)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return await self.get_many([_text(i) for i in ids])

    async def count(self) -> int:
        try:
            return int(await self._redis.zcard(INDEX))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def claim_firing(
        self, entry_id: str, *, now: float, lease: float, token: str = ""
    ) -> tuple[FireStatus, Entry | None]:
        if not valid_id(entry_id):
            return "missing", None
        try:
            status, raw = await self._fire(
                keys=[PREFIX + entry_id], args=[now, lease, OLDEST_READABLE, FORMAT_VERSION, token]
            )
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return _text(status), (Entry.loads(raw) if raw else None)  # type: ignore[return-value]

    async def renew(self, entry_id: str, *, now: float, lease: float, token: str) -> bool:
        """Extend a firing's lease; False when the firing no longer holds it."""
        try:
            return bool(await self._renew(keys=[PREFIX + entry_id], args=[now, lease, token]))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def mark_sent(self, entry_id: str, *, now: float) -> None:
        """Before the PATCH goes out: a firing after a crash then tells "removed at the time" from
        "removed before it" (the first time is kept)."""
        try:
            await self._sent(keys=[PREFIX + entry_id], args=[now])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def remove(
        self, entry_id: str, *, now: float, mode: Literal["cancel", "done"]
    ) -> tuple[RemoveStatus, Entry | None]:
        """Delete a schedule (a cancel is refused while it is firing); returns what was there."""
        if not valid_id(entry_id):
            return "missing", None
        try:
            status, raw = await self._remove(
                keys=[PREFIX + entry_id, INDEX], args=[entry_id, now, mode, SEAT]
            )
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return _text(status), (Entry.loads(raw) if raw else None)  # type: ignore[return-value]
