"""The audit trail: every event goes to a bounded Redis Stream and a JSON log line.

The log line is written first and always, so an event is never lost silently even when Redis is
down; `record()` returns False in that case and the caller notes it in the reply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable
from bot.models import AuditEvent

log = logging.getLogger("seatbot.audit")

STREAM = "seatbot:audit"


class Audit:
    def __init__(
        self,
        redis: aredis.Redis,
        *,
        maxlen: int = 10_000,
        clock: Callable[[], float] = time.time,
        origin: dict[str, str] | None = None,
    ) -> None:
        """`origin`: fields added to every event, saying where it came from (the local shell and
        the OS user running it), so an event written there is never mistaken for one from Slack."""
        self._origin = dict(origin or {})
        self._redis = redis
        self._maxlen = maxlen
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
                "at": round(self._clock(), 3),
                **{k: v for k, v in fields.items() if v is not None},
                **self._origin,
            }
            log.info("audit %s", event, extra={"audit": entry})
            entries.append(entry)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    pipe.xadd(
                        STREAM,
                        {"json": json.dumps(entry, default=str)},
                        maxlen=self._maxlen,
                        approximate=False,
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

    async def recent(self, count: int) -> list[dict[str, Any]]:
        """The newest `count` events, newest first."""
        try:
            rows = await self._redis.xrevrange(STREAM, count=count)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        events = []
        for _id, data in rows or []:
            raw = (data or {}).get(b"json") or (data or {}).get("json")
            try:
                events.append(json.loads(raw or b""))
            except ValueError:
                continue
        return events
