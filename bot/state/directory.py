"""The seat directory in Redis: which email holds which seat UID, as of the last complete sync.

Two hashes hold the live directory: `seatbot:dir:uid` (seat UID → email) and `seatbot:dir:email`
(folded email → seat UID). A sync writes a fresh pair under its own build keys and, when its
listing is complete, one Lua script swaps them in (UNLINK + RENAME, with the meta hash) only if
the sync still holds the lease. Look-ups read inside MULTI, so a look-up sees one sync or the
other, never half of each. A lease key with a TTL, refreshed while syncing, lets exactly one process
sync at a time; if its holder dies the lease and the half-built keys simply expire.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable

PREFIX = "seatbot:dir"
UIDS = f"{PREFIX}:uid"
EMAILS = f"{PREFIX}:email"
META = f"{PREFIX}:meta"
PROGRESS = f"{PREFIX}:progress"
LEASE = f"{PREFIX}:lease"
FACTS = f"{PREFIX}:facts"  # seat UID → what the idle rule reads (bot.idle.fact), swapped with the rest

State = Literal["ready", "syncing", "empty", "off"]

# KEYS: lease, build uid, build email, live uid, live email, meta, progress, build facts, live facts.
# ARGV: token, meta pairs.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[4], KEYS[5], KEYS[9])
for _, pair in ipairs({{2, 4}, {3, 5}, {8, 9}}) do
  if redis.call('EXISTS', KEYS[pair[1]]) == 1 then
    redis.call('RENAME', KEYS[pair[1]], KEYS[pair[2]])
    redis.call('PERSIST', KEYS[pair[2]])
  end
end
redis.call('DEL', KEYS[6], KEYS[7])
redis.call('HSET', KEYS[6], unpack(ARGV, 2))
return 1
"""
# KEYS: lease (+ more keys to expire alongside). ARGV: token, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


def fold(email: str) -> str:
    return email.strip().casefold()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(meta: dict[str, str], key: str) -> float | None:
    try:
        return float(meta[key])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class DirectoryStatus:
    state: State
    users: int
    synced_at: float | None  # epoch seconds of the last complete sync
    last: dict[str, str]  # the last sync's figures (users, pages, requests, seconds) or its error
    progress: dict[str, str]  # the running sync's figures, if one runs

    @property
    def ready(self) -> bool:
        return self.synced_at is not None


@dataclass(frozen=True)
class Snapshot:
    """What one look-up read: the emails for the asked UIDs, from one complete sync."""

    emails: dict[str, str | None]
    synced_at: float | None


def _store_error(exc: RedisError) -> StoreUnavailable:
    return StoreUnavailable(f"Redis: {type(exc).__name__}")


class SeatDirectory:
    """Redis records of the account's Access users (or the in-process store, same code)."""

    def __init__(self, redis: aredis.Redis) -> None:
        self._redis = redis
        self._swap = redis.register_script(_SWAP)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    # -- reading ---------------------------------------------------------------------------

    async def lookup(self, seat_uids: Sequence[str]) -> Snapshot:
        """Emails recorded for these seat UIDs: one round trip, one sync."""
        if not seat_uids:
            return Snapshot({}, None)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(UIDS, list(seat_uids))
                pipe.hget(META, "synced_at")
                emails, synced = await pipe.execute()
        except RedisError as exc:
            raise _store_error(exc) from None
        found = {uid: (_text(e) if e is not None else None) for uid, e in zip(seat_uids, emails, strict=True)}
        return Snapshot(found, float(synced) if synced is not None else None)

    async def uids_for(self, emails: Sequence[str]) -> dict[str, str | None]:
        """Seat UIDs recorded for these emails: one round trip."""
        if not emails:
            return {}
        try:
            found = await self._redis.hmget(EMAILS, [fold(e) for e in emails])
        except RedisError as exc:
            raise _store_error(exc) from None
        return {e: (_text(u) if u is not None else None) for e, u in zip(emails, found, strict=True)}

    async def status(self, *, enabled: bool = True) -> DirectoryStatus:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(META)
                pipe.hgetall(PROGRESS)
                pipe.exists(LEASE)
                raw_meta, raw_progress, leased = await pipe.execute()
        except RedisError as exc:
            raise _store_error(exc) from None
        meta = {_text(k): _text(v) for k, v in raw_meta.items()}
        progress = {_text(k): _text(v) for k, v in raw_progress.items()} if leased else {}
        synced_at = _float(meta, "synced_at")
        users = int(meta.get("users", "0") or 0) if synced_at is not None else 0
        state: State
        if not enabled:
            state = "off"
        elif leased:
            state = "syncing"
        else:
            state = "ready" if synced_at is not None else "empty"
        return DirectoryStatus(state, users, synced_at, meta, progress)

    # -- fresh answers from Cloudflare -----------------------------------------------------

    async def remember(
        self, holders: Iterable[tuple[str, str]], facts: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Write through what Cloudflare just said (seat UID, email; and its facts) into the directory."""
        pairs = list(holders)
        if not pairs and not facts:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if pairs:
                    pipe.hset(UIDS, mapping=dict(pairs))
                    pipe.hset(EMAILS, mapping={fold(email): uid for uid, email in pairs})
                if facts:
                    pipe.hset(FACTS, mapping=dict(facts))
                await pipe.execute()
        except RedisError:
            pass  # a cache write: the next sync fixes it

    async def forget(self, seat_uid: str) -> None:
        """A record Cloudflare contradicted: drop it so it is not tried again."""
        with contextlib.suppress(RedisError):
            await self._redis.hdel(UIDS, seat_uid)

    # -- syncing ---------------------------------------------------------------------------

    async def acquire_lease(self, token: str, *, ttl: float) -> bool:
        holder = f"{socket.gethostname()}:{token[:8]}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(LEASE, token, nx=True, px=int(ttl * 1000))
                took = (await pipe.execute())[0]
            if took:
                await self._redis.hset(PROGRESS, mapping={"token": token, "holder": holder})
                await self._redis.pexpire(PROGRESS, int(ttl * 1000))
        except RedisError as exc:
            raise _store_error(exc) from None
        return bool(took)

    async def renew_lease(self, token: str, *, ttl: float) -> bool:
        keys = [LEASE, PROGRESS, *self._build_keys(token)]
        return bool(await self._renew(keys=keys, args=[token, int(ttl * 1000)]))

    async def release_lease(self, token: str) -> None:
        try:
            await self._release(keys=[LEASE, PROGRESS], args=[token])
            await self._redis.unlink(*self._build_keys(token))
        except RedisError:
            pass  # the lease expires on its own

    async def progress(self, token: str, **figures: float | int | str) -> None:
        await self._redis.hset(PROGRESS, mapping={k: str(v) for k, v in figures.items()})

    async def add(
        self,
        token: str,
        holders: Sequence[tuple[str, str]],
        *,
        ttl: float,
        facts: Sequence[tuple[str, str]] = (),
    ) -> None:
        """One page of a sync into its build keys (which expire if the sync dies)."""
        uid_key, email_key, facts_key = self._build_keys(token)
        async with self._redis.pipeline(transaction=False) as pipe:
            if holders:
                pipe.hset(uid_key, mapping=dict(holders))
                pipe.hset(email_key, mapping={fold(email): uid for uid, email in holders})
            if facts:
                pipe.hset(facts_key, mapping=dict(facts))
            for key in (uid_key, email_key, facts_key):
                pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def swap(self, token: str, **meta: float | int | str) -> bool:
        """Make this sync's records the directory, atomically, if it still holds the lease."""
        uid_key, email_key, facts_key = self._build_keys(token)
        args: list[str] = [token]
        for key, value in meta.items():
            args += [key, str(value)]
        keys = [LEASE, uid_key, email_key, UIDS, EMAILS, META, PROGRESS, facts_key, FACTS]
        return bool(await self._swap(keys=keys, args=args))

    async def failed(self, **figures: float | int | str) -> None:
        """Note a sync that could not finish; the directory in place stays as it was."""
        with contextlib.suppress(RedisError):
            await self._redis.hset(META, mapping={f"last_{k}": str(v) for k, v in figures.items()})

    @staticmethod
    def _build_keys(token: str) -> tuple[str, str, str]:
        build = f"{PREFIX}:build:{token}"
        return f"{build}:uid", f"{build}:email", f"{build}:facts"
