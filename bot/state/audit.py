"""The audit trail: every event goes to a bounded Redis Stream and a JSON log line.

The log line is written first and always, so an event is never lost silently even when Redis is
down; `record()` returns False in that case and the caller notes it in the reply.

Real events (requested, approved, confirmed, succeeded, failed, scheduled, swept, cancelled, …)
and noise (refused, expired_click, outdated: what anyone can cause by typing or clicking) are kept
in two streams, each trimmed to its own length, so no amount of noise pushes a real event out. One
person adds at most `noise_per_minute` noise entries a minute; the rest are only counted (a hash of
refusals per user, and the JSON log line, which is always written). A non-admin sending 10,000
refused commands (issue 18 §3) thus adds 20 entries a minute and a count, and `/seat audit` still
shows the real events.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.domain.models import AuditEvent
from bot.errors import StoreUnavailable
from bot.state.keys import key

log = logging.getLogger("seatbot.audit")

STREAM = key("audit")  # real events
NOISE = key("audit:noise")  # refusals, expired and outdated clicks
REFUSALS = key("audit:refusals")  # user → noise events ever caused (stored or only counted)
NOISE_EVENTS: frozenset[str] = frozenset({"refused", "expired_click", "outdated"})

# KEYS: the noise stream, this user's counter for this minute, the per-user totals.
# ARGV: per-minute cap, the stream's length, the entry (JSON), the user. 1: stored, 0: only counted.
_NOISE = """
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], 120) end
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
if n > tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'json', ARGV[3])
return 1
"""


class Audit:
    def __init__(
        self,
        redis: aredis.Redis,
        *,
        maxlen: int = 10_000,
        noise_maxlen: int = 5_000,
        noise_per_minute: int = 20,
        clock: Callable[[], float] = time.time,
        origin: dict[str, str] | None = None,
    ) -> None:
        """`origin`: fields added to every event, saying where it came from (the local shell and
        the OS user running it), so an event written there is never mistaken for one from Slack."""
        self._origin = dict(origin or {})
        self._redis = redis
        self._maxlen = maxlen
        self._noise_maxlen = noise_maxlen
        self._noise_per_minute = noise_per_minute
        self._noise = redis.register_script(_NOISE)
        self._clock = clock

    async def record(self, event: AuditEvent, **fields: Any) -> bool:
        """Append one event; False (and an error log) when the stream write failed."""
        return await self.record_many([(event, fields)])

    async def record_many(self, events: list[tuple[AuditEvent, dict[str, Any]]]) -> bool:
        """Append several events in one round trip (a 50-seat outcome is one pipeline, not 50 calls)."""
        if not events:
            return True
        entries = []
        for event, fields in events:
            entry = {
                "event": event,
                **{k: v for k, v in fields.items() if v is not None},
                **self._origin,
                "at": round(self._clock(), 3),  # when it happened, always (a due time is `due`)
            }
            log.info("audit %s", event, extra={"audit": entry})
            entries.append(entry)
        minute = int(self._clock() // 60)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    raw = json.dumps(entry, default=str)
                    if entry["event"] not in NOISE_EVENTS:
                        pipe.xadd(STREAM, {"json": raw}, maxlen=self._maxlen, approximate=False)
                        continue
                    user = str(entry.get("user") or "-")
                    await self._noise(
                        keys=[NOISE, f"{NOISE}:{user}:{minute}", REFUSALS],
                        args=[self._noise_per_minute, self._noise_maxlen, raw, user],
                        client=pipe,
                    )
                await pipe.execute()
        except RedisError as exc:
            log.error(
                "audit write to Redis failed (%s); the %d events above are only in this log",
                type(exc).__name__,
                len(entries),
            )
            return False
        return True

    async def recent(self, count: int, *, noise: bool = False) -> list[dict[str, Any]]:
        """The newest `count` real events (with `noise`: refusals and expired clicks), newest first."""
        try:
            rows = await self._redis.xrevrange(NOISE if noise else STREAM, count=count)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        events = []
        for stream_id, data in rows or []:
            raw = (data or {}).get(b"json") or (data or {}).get("json")
            try:
                events.append(_when_written(json.loads(raw or b""), stream_id))
            except ValueError:
                continue
        return events

    async def refusals(self) -> int:
        """Noise events ever caused, stored or only counted."""
        try:
            counts = await self._redis.hvals(REFUSALS)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return sum(int(c) for c in counts)


def _when_written(event: dict[str, Any], stream_id: bytes | str | None) -> dict[str, Any]:
    """Events of older releases kept a scheduled removal's due time in `at` (the request time was
    lost): the stream entry's id holds when it was written, so `at` is that and the due time `due`."""
    if event.get("event") not in ("requested", "scheduled") or "due" in event or stream_id is None:
        return event
    ident = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
    try:
        written = int(ident.split("-")[0]) / 1000
        at = float(event["at"])
    except (KeyError, TypeError, ValueError):
        return event
    if at - written > 60:  # a time in the future of its own writing: a due time
        return {**event, "at": round(written, 3), "due": at}
    return event
