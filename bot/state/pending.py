"""Pending confirmations in Redis: one key per card, claimed atomically so a click acts once.

A card's button carries only a random 128-bit id. The record lives under `seatbot:pending:<id>`
with a TTL. Claiming is one Lua script: it checks who may click and deletes the record in the same
step, so of any number of clicks on any number of processes exactly one gets the record.
"""

from __future__ import annotations

import logging
from typing import Literal, cast

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import OutdatedRecord, StoreUnavailable
from bot.models import FORMAT_VERSION, OLDEST_READABLE, Claim, ClaimStatus, Pending, new_id, valid_id

log = logging.getLogger("seatbot.pending")

PREFIX = "seatbot:pending:"
CLAIMED = "seatbot:claimed:"

# KEYS[1] the record, KEYS[2] its claim marker.
# ARGV: clicker, action, clicker_is_admin, format version, two_person now ("1"/"0"), click nonce,
# lease seconds, oldest readable format version. A record of another version is deleted and
# answered 'outdated' (a release before 2 compared with its own 1, so it refuses newer cards).
# The marker makes the claim idempotent: if the client re-sends the script (a read timeout, then a
# retry) the same click gets "claimed" again. A later click by the same admin on the same button
# finds the claim "busy" while the lease (the longest a revoke can take) runs, then resumes it:
# a claim whose caller timed out (Redis stalled, the script ran later) never uses the card up
# silently, and a double click never acts twice. Anyone else gets "missing".
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner = ARGV[1] .. ':' .. ARGV[2]
local marker = redis.call('GET', KEYS[2])
if marker then
  local m = cjson.decode(marker)
  if m.nonce == ARGV[6] then return {'claimed', m.raw} end
  if m.owner ~= owner then return {'missing', false} end
  if now < m.lease then return {'busy', tostring(math.ceil((m.lease - now) / 1000))} end
  m.nonce, m.lease = ARGV[6], now + 1000 * tonumber(ARGV[7])
  redis.call('SET', KEYS[2], cjson.encode(m), 'KEEPTTL')
  return {'claimed', m.raw}
end
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing', false} end
local ok, rec = pcall(cjson.decode, raw)
local v = ok and type(rec) == 'table' and tonumber(rec.v)
if not v or v > tonumber(ARGV[4]) or v < tonumber(ARGV[8]) then
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
  return {'not_requester', raw}
end
redis.call('DEL', KEYS[1])
local lease = tonumber(ARGV[7])
-- an idle sweep may run far longer than one revoke: never resumed while it could still be running
if type(rec.sweep) == 'number' and rec.sweep > 0 then lease = 3600 end
local m = {nonce = ARGV[6], raw = raw, owner = owner, lease = now + 1000 * lease}
redis.call('SET', KEYS[2], cjson.encode(m), 'EX', lease + 300)
return {'claimed', raw}
"""


class PendingStore:
    def __init__(self, redis: aredis.Redis, *, lease_seconds: int = 90) -> None:
        """`lease_seconds`: the longest one revoke can take (Cloudflare retries included)."""
        self._redis = redis
        self._lease = lease_seconds
        self._claim = redis.register_script(_CLAIM)

    async def put(self, pending: Pending, *, ttl: int) -> None:
        try:
            await self._redis.set(PREFIX + pending.id, pending.dumps(), ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def finish(self, pending_id: str) -> None:
        """The claimed revoke ran: from now on every click on this card is `missing`."""
        try:
            await self._redis.set(CLAIMED + pending_id, '{"done": true}', keepttl=True)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def claim(
        self,
        pending_id: str,
        *,
        clicker: str,
        action: Literal["confirm", "cancel"],
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
                args=[
                    clicker,
                    action,
                    int(clicker_is_admin),
                    FORMAT_VERSION,
                    int(two_person),
                    nonce,
                    self._lease,
                    OLDEST_READABLE,
                ],
            )
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status == "busy":
            return Claim("busy", wait=int(raw))
        pending = None
        if raw and status != "outdated":
            try:
                pending = Pending.loads(raw)
            except OutdatedRecord as exc:  # used up, never acted on: later clicks are "handled"
                log.warning("pending record %s: %s", pending_id, exc)
                if status == "claimed":
                    await self.finish(pending_id)
                return Claim("outdated")
        return Claim(cast(ClaimStatus, status), pending)
