"""The seat directory in Redis: which email holds which seat UID, as of the last complete sync.

The live directory is two sets of small hashes: `{seatbot}:dir:uid:<b>` (seat UID → email) and
`{seatbot}:dir:email:<b>` (folded email → seat UID), `b` = crc32 of the key mod 2048. Small hashes
stay in Redis's compact listpack encoding (up to about 250,000 users), about 60 % of the
memory of two big hashes. A sync writes a fresh set under its own build keys and, when its listing
is complete, one Lua script swaps them in (UNLINK + RENAME, and the meta hash) only if the sync
still holds the lease (the idle report's per-seat facts, `{seatbot}:dir:facts`, one hash read with
HSCAN by bot/state/seat_facts.py, are built and swapped with them). Look-ups read inside MULTI, so
a look-up sees one sync or the other, never half of each. A lease key with a TTL, refreshed while
syncing, lets exactly one process sync at a time; if its holder dies the lease and the half-built
keys simply expire.
"""

from __future__ import annotations

import contextlib
import socket
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable
from bot.state import keys

PREFIX = keys.key("dir")
BUCKETS = 2048
META = f"{PREFIX}:meta"
PROGRESS = f"{PREFIX}:progress"
LEASE = f"{PREFIX}:lease"
FACTS = f"{PREFIX}:facts"  # seat UID → what the idle rule reads (bot.domain.idle.fact), swapped with the rest

State = Literal["ready", "syncing", "empty", "off"]

# The bucket keys are built inside the scripts from their prefixes: all in the bot's one hash slot
# (bot/state/keys.py), so this holds on Redis Cluster too.
# KEYS: lease, meta, progress, live facts. ARGV: token, buckets, build prefix, live prefix, meta pairs…
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[4])
if redis.call('EXISTS', ARGV[3] .. ':facts') == 1 then
  redis.call('RENAME', ARGV[3] .. ':facts', KEYS[4])
  redis.call('PERSIST', KEYS[4])
end
for b = 0, tonumber(ARGV[2]) - 1 do
  for _, kind in ipairs({':uid:', ':email:'}) do
    local build, live = ARGV[3] .. kind .. b, ARGV[4] .. kind .. b
    redis.call('UNLINK', live)
    if redis.call('EXISTS', build) == 1 then
      redis.call('RENAME', build, live)
      redis.call('PERSIST', live)
    end
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
return 1
"""
# KEYS: lease, progress. ARGV: token, ttl ms, buckets, build prefix.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', ARGV[4] .. ':facts', ARGV[2] * 3)
for b = 0, tonumber(ARGV[3]) - 1 do
  redis.call('PEXPIRE', ARGV[4] .. ':uid:' .. b, ARGV[2] * 3)
  redis.call('PEXPIRE', ARGV[4] .. ':email:' .. b, ARGV[2] * 3)
end
return 1
"""
# KEYS: lease, progress. ARGV: token, buckets, build prefix. The build keys go whoever holds the lease.
_RELEASE = """
redis.call('UNLINK', ARGV[3] .. ':facts')
for b = 0, tonumber(ARGV[2]) - 1 do
  redis.call('UNLINK', ARGV[3] .. ':uid:' .. b, ARGV[3] .. ':email:' .. b)
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


def fold(email: str) -> str:
    return email.strip().casefold()


def bucket(key: str) -> int:
    return zlib.crc32(key.encode()) % BUCKETS


def _live(kind: str, key: str) -> str:
    return f"{PREFIX}:{kind}:{bucket(key)}"


def _grouped(kind: str, prefix: str, pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """{bucket key: {field: value}} for HSETs, one per bucket touched."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for field, value in pairs:
        out[f"{prefix}:{kind}:{bucket(field)}"][field] = value
    return out


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
                for uid in seat_uids:
                    pipe.hget(_live("uid", uid), uid)
                pipe.hget(META, "synced_at")
                *emails, synced = await pipe.execute()
        except RedisError as exc:
            raise _store_error(exc) from None
        found = {uid: (_text(e) if e is not None else None) for uid, e in zip(seat_uids, emails, strict=True)}
        return Snapshot(found, float(synced) if synced is not None else None)

    async def uids_for(self, emails: Sequence[str]) -> dict[str, str | None]:
        """Seat UIDs recorded for these emails: one round trip."""
        if not emails:
            return {}
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for email in emails:
                    pipe.hget(_live("email", fold(email)), fold(email))
                found = await pipe.execute()
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
                self._hset(pipe, PREFIX, pairs)
                if facts:
                    pipe.hset(FACTS, mapping=dict(facts))
                await pipe.execute()
        except RedisError:
            pass  # a cache write: the next sync fixes it

    async def forget(self, seat_uid: str) -> None:
        """A record Cloudflare contradicted: drop it so it is not tried again."""
        with contextlib.suppress(RedisError):
            await self._redis.hdel(_live("uid", seat_uid), seat_uid)

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
        args: list[bytes | str | int | float] = [token, int(ttl * 1000), BUCKETS, self._build(token)]
        return bool(await self._renew(keys=[LEASE, PROGRESS], args=args))

    async def release_lease(self, token: str) -> None:
        args: list[bytes | str | int | float] = [token, BUCKETS, self._build(token)]
        with contextlib.suppress(RedisError):  # if not, the lease and the build keys expire on their own
            await self._release(keys=[LEASE, PROGRESS], args=args)

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
        async with self._redis.pipeline(transaction=False) as pipe:
            touched = self._hset(pipe, self._build(token), holders)
            if facts:
                pipe.hset(self._build(token) + ":facts", mapping=dict(facts))
                touched.append(self._build(token) + ":facts")
            for key in touched:
                pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def swap(self, token: str, **meta: float | int | str) -> bool:
        """Make this sync's records the directory, atomically, if it still holds the lease."""
        args: list[bytes | str | int | float] = [token, BUCKETS, self._build(token), PREFIX]
        for key, value in meta.items():
            args += [key, str(value)]
        return bool(await self._swap(keys=[LEASE, META, PROGRESS, FACTS], args=args))

    async def failed(self, **figures: float | int | str) -> None:
        """Note a sync that could not finish; the directory in place stays as it was."""
        with contextlib.suppress(RedisError):
            await self._redis.hset(META, mapping={f"last_{k}": str(v) for k, v in figures.items()})

    @staticmethod
    def _build(token: str) -> str:
        return f"{PREFIX}:build:{token}"

    @staticmethod
    def _hset(pipe: Any, prefix: str, holders: Sequence[tuple[str, str]]) -> list[str]:
        """Queue the HSETs for (seat UID, email) pairs under `prefix`; returns the keys touched."""
        touched = []
        for kind, pairs in (("uid", holders), ("email", [(fold(e), uid) for uid, e in holders])):
            for key, mapping in _grouped(kind, prefix, pairs).items():
                pipe.hset(key, mapping=mapping)
                touched.append(key)
        return touched
