"""Pending confirmations in Redis: one key per card, claimed atomically so a click acts once.

A card's button carries only a random 128-bit id. The record lives under `seatbot:pending:<id>`
with a TTL. Claiming is one Lua script: it checks who may click and deletes the record in the same
step, so of any number of clicks on any number of processes exactly one gets the record.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable

FORMAT_VERSION = 1
PREFIX = "seatbot:pending:"
CLAIMED = "seatbot:claimed:"
_ID_CHARS = set("0123456789abcdef")

# KEYS[1] the record, KEYS[2] its claim marker.
# ARGV: clicker, action, clicker_is_admin, format version, two_person now ("1"/"0"), click nonce.
# The marker makes the claim idempotent: if the client re-sends the script (a read timeout, then a
# retry) the same click gets "claimed" again instead of "missing"; any other click gets "missing".
_CLAIM = """
local marker = redis.call('GET', KEYS[2])
if marker then
  local m = cjson.decode(marker)
  if m.nonce == ARGV[6] then return {'claimed', m.raw} end
  return {'missing', false}
end
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing', false} end
local ok, rec = pcall(cjson.decode, raw)
if not ok or type(rec) ~= 'table' or rec.v ~= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  return {'outdated', raw}
end
local clicker, action = ARGV[1], ARGV[2]
local requester = rec.requester
-- the stricter of the rule the card was made under and the rule in force now
local two_person = rec.two_person == true or ARGV[5] == '1'
if action == 'confirm' then
  if two_person then
    if clicker == requester then return {'own_request', raw} end
  elseif clicker ~= requester then
    return {'not_requester', raw}
  end
elseif action == 'cancel' then
  if clicker ~= requester and not (two_person and ARGV[3] == '1') then
    return {'not_requester', raw}
  end
else
  return {'bad_action', raw}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], cjson.encode({nonce = ARGV[6], raw = raw}), 'EX', 300)
return {'claimed', raw}
"""

ClaimStatus = Literal["claimed", "missing", "outdated", "own_request", "not_requester", "bad_action"]


@dataclass
class PendingTarget:
    """One seat on a card, with what was known of it when the card was made."""

    label: str  # what the requester typed (email, mention, uid)
    seat_uid: str
    email: str | None = None
    name: str | None = None
    access_seat: bool | None = None
    gateway_seat: bool | None = None


@dataclass
class Pending:
    id: str
    requester: str
    channel: str
    targets: list[PendingTarget]
    reason: str | None
    created_at: float
    expires_at: float
    two_person: bool = False
    attempt: int = 1  # 2+ when a failed revoke offered a fresh try
    v: int = FORMAT_VERSION

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Pending:
        data = json.loads(raw)
        data["targets"] = [PendingTarget(**t) for t in data["targets"]]
        return cls(**data)


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    pending: Pending | None = None


def new_id() -> str:
    return secrets.token_hex(16)  # 128 bits


def valid_id(value: str) -> bool:
    return len(value) == 32 and set(value) <= _ID_CHARS


class PendingStore:
    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis
        self._claim = redis.register_script(_CLAIM)

    async def put(self, pending: Pending, *, ttl: int) -> None:
        try:
            await self._redis.set(PREFIX + pending.id, pending.dumps(), ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def claim(
        self,
        pending_id: str,
        *,
        clicker: str,
        action: str,
        clicker_is_admin: bool,
        two_person: bool,
        nonce: str | None = None,
    ) -> Claim:
        """Atomically take the record if this click may act on it; a refused click leaves it."""
        if not valid_id(pending_id):
            return Claim("missing")
        nonce = nonce or new_id()
        try:
            status, raw = await self._claim(
                keys=[PREFIX + pending_id, CLAIMED + pending_id],
                args=[clicker, action, int(clicker_is_admin), FORMAT_VERSION, int(two_person), nonce],
            )
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        status = status.decode() if isinstance(status, bytes) else str(status)
        pending = None
        if raw and status != "outdated":
            pending = Pending.loads(raw)
        return Claim(status, pending)  # type: ignore[arg-type]
