"""Pending confirmations in Redis: one key per card, claimed atomically so a click acts once.

A card's button carries only a random 128-bit id. The record lives under `{seatbot}:pending:<id>`
with a TTL. Claiming is one Lua script: it checks who may click and deletes the record in the same
step, so of any number of clicks on any number of processes exactly one gets the record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.domain.models import (
    FORMAT_VERSION,
    OLDEST_READABLE,
    WORKFLOW_REQUESTER,
    Claim,
    ClaimStatus,
    Pending,
    new_id,
    valid_id,
)
from bot.errors import OutdatedRecord, StoreUnavailable
from bot.state.keys import key

log = logging.getLogger("seatbot.pending")

PREFIX = key("pending:")
CLAIMED = key("claimed:")
APPROVED = key("approved:")

# KEYS[1] the record, KEYS[2] its claim marker, KEYS[3] its first approval (workflow cards).
# ARGV: clicker, action, clicker_is_admin, format version, two_person now ("1"/"0"), click nonce,
# lease seconds, oldest readable format version, the requester of a workflow's card.
# A workflow's card has no requester Slack vouches for: any admin may act on it, and under the
# two-person rule its first admin's confirm only approves it (kept beside the record, as long as
# it lives) and another admin's confirm claims it; the claim returns the approver as a third item.
# A record of another version is deleted and answered 'outdated' (a release before 2 compared with
# its own 1, so it refuses newer cards).
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
  if m.nonce == ARGV[6] then return {'claimed', m.raw, m.approver or false} end
  if m.owner ~= owner then return {'missing', false} end
  if now < m.lease then return {'busy', tostring(math.ceil((m.lease - now) / 1000))} end
  m.nonce, m.lease = ARGV[6], now + 1000 * tonumber(ARGV[7])
  redis.call('SET', KEYS[2], cjson.encode(m), 'KEEPTTL')
  return {'claimed', m.raw, m.approver or false}
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
local admin, anyone = ARGV[3] == '1', requester == ARGV[9]
local approver = false
if action == 'confirm' then
  if two_person then
    if clicker == requester then return {'own_request', raw} end
    if anyone then
      approver = redis.call('GET', KEYS[3])
      if not approver then
        if not admin then return {'not_requester', raw} end
        local ttl = redis.call('PTTL', KEYS[1])
        redis.call('SET', KEYS[3], clicker, 'PX', math.max(ttl, 1000))
        return {'approved', raw}
      end
      if approver == clicker then return {'own_approval', raw} end
    end
  elseif clicker ~= requester and not (anyone and admin) then
    return {'not_requester', raw}
  end
elseif action == 'cancel' then
  if clicker ~= requester and not ((two_person or anyone) and admin) then
    return {'not_requester', raw}
  end
else
  return {'not_requester', raw}
end
redis.call('DEL', KEYS[1], KEYS[3])
local lease = tonumber(ARGV[7])
-- an idle sweep may run far longer than one revoke: never resumed while it could still be running
if type(rec.sweep) == 'number' and rec.sweep > 0 then lease = 3600 end
local m = {nonce = ARGV[6], raw = raw, owner = owner, lease = now + 1000 * lease, approver = approver}
redis.call('SET', KEYS[2], cjson.encode(m), 'EX', lease + 300)
return {'claimed', raw, approver}
"""


def _replicated(info: dict[str, Any], acked: int, wanted: int) -> bool:
    """Every connected replica, up to `wanted`, acknowledged the write. A primary left with no
    replica (the one just promoted, its old primary dead) has nobody to lose it to."""
    return int(acked) >= min(wanted, int(info.get("connected_slaves", 0)))


class PendingStore:
    def __init__(
        self,
        redis: aredis.Redis,
        *,
        lease_seconds: int = 90,
        replicas: int = 0,
        wait_seconds: float = 0.5,
        settle_seconds: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`lease_seconds`: the longest one revoke can take (Cloudflare retries included).

        `replicas` (Sentinel): a claim counts only once that many replicas have it, or every
        connected one if fewer are (WAIT, up to `wait_seconds`), and the "done" mark is retried
        for up to `settle_seconds` until they have it. Replication is asynchronous: without this, a
        failover right after a claim could promote a replica where the card is still unclaimed, and
        a second click would revoke again; or one where the revoke is not marked done, and the same
        admin could resume it."""
        self._redis = redis
        self._lease = lease_seconds
        self._claim = redis.register_script(_CLAIM)
        self._replicas = replicas
        self._wait_ms = max(1, int(wait_seconds * 1000))
        self._settle = settle_seconds
        self._sleep = sleep

    async def put(self, pending: Pending, *, ttl: int) -> None:
        try:
            await self._redis.set(PREFIX + pending.id, pending.dumps(), ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def finish(self, pending_id: str) -> None:
        """The claimed revoke ran: from now on every click on this card is `missing`."""
        if not self._replicas:
            try:
                await self._redis.set(CLAIMED + pending_id, '{"done": true}', keepttl=True)
            except RedisError as exc:
                raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
            return
        # The revoke happened: keep trying through a failover (seconds) until replicas have it.
        deadline = time.monotonic() + self._settle
        pause = 0.1
        while True:
            problem = "too few replicas acknowledged it"
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.info("replication")
                    pipe.set(CLAIMED + pending_id, '{"done": true}', keepttl=True)
                    pipe.wait(self._replicas, self._wait_ms)
                    info, _, acked = await pipe.execute()
                if _replicated(info, acked, self._replicas):
                    return
            except RedisError as exc:
                problem = type(exc).__name__
            if time.monotonic() + pause > deadline:
                raise StoreUnavailable(f"Redis: marking done: {problem}")
            await self._sleep(pause)
            pause = min(pause * 2, 2.0)

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
        keys = [PREFIX + pending_id, CLAIMED + pending_id, APPROVED + pending_id]
        args: list[bytes | str | int | float] = [
            clicker,
            action,
            int(clicker_is_admin),
            FORMAT_VERSION,
            int(two_person),
            nonce,
            self._lease,
            OLDEST_READABLE,
            WORKFLOW_REQUESTER,
        ]
        try:
            if not self._replicas:
                status, raw, *rest = await self._claim(keys=keys, args=args)
            else:  # the same connection, so WAIT covers the script's writes
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.info("replication")
                    await self._claim(keys=keys, args=args, client=pipe)
                    pipe.wait(self._replicas, self._wait_ms)
                    info, (status, raw, *rest), acked = await pipe.execute()
                if status in (b"claimed", "claimed") and not _replicated(info, acked, self._replicas):
                    # Not acted on: a failover now could bring the card back. The claim stays
                    # leased, so the same admin's click resumes it once the lease runs out.
                    log.error(
                        "claim of %s reached %s of %s replicas in time", pending_id, acked, self._replicas
                    )
                    raise StoreUnavailable("Redis: the claim reached too few replicas")
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
        approver = rest[0] if rest and rest[0] else (clicker if status == "approved" else None)
        if pending is not None and approver:
            approver = approver.decode() if isinstance(approver, bytes) else str(approver)
            pending = dataclasses.replace(pending, approved_by=approver)
        return Claim(cast(ClaimStatus, status), pending)
