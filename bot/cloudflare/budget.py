"""One rate budget for the Cloudflare token, shared by every process through Redis.

Cloudflare allows 1,200 requests per rolling 5 minutes per token and blocks *every* call for five
minutes past that, so each request first takes a slot here: one Lua script over one sorted set
(a sliding-window log), atomic across processes. Two lanes share the window: `interactive` (people
waiting in Slack) may fill it to `limit`; `sync` (the seat directory) only while the window holds
fewer than `limit * share`, so interactive commands always keep at least `limit * (1 - share)`.
`bulk` (idle sweeps) shares the sync lane's part but waits only as long as an interactive request:
a sweep that finds no room pauses and continues later (bot/app/sweep.py); a scan of the user list
for seat UIDs (only while the seat directory is off or building) is charged to it too. `workflow`
(Workflow Builder runs, started by whoever may run the workflow, usually not an admin) is capped
like `sync` and also by per-minute quotas (one runner, one workflow, all workflows: domain/spend.py,
app/workflow.py), so no mix of workflows, syncs, sweeps and scans can take the interactive reserve.
Work charged with `bot.domain.spend.charged` takes its slots on that lane whatever lane it asked.
Cloudflare's `Ratelimit` headers (r = remaining, t = seconds until more frees up) and a 429's
Retry-After set pause keys that every process honours, so other users of the same token count too.
A pause is capped at one window (Cloudflare's documented worst case is a 5-minute block): one odd
header (`t=86400`, `Retry-After: 86400`) cannot stop every process for a day. Who asked for the
pause, how long and until when is kept beside it, so refusals, /healthz and `check` can name it.

Redis trouble never blocks a revoke: the budget then lets the request through and logs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot import metrics
from bot.domain import spend
from bot.errors import BudgetExhausted
from bot.state import keys

log = logging.getLogger("seatbot.budget")

Lane = Literal[
    "interactive", "sync", "bulk", "workflow"
]  # bulk: idle sweeps, on the sync lane's share but never waiting long; workflow: see above
PREFIX = keys.key("cf:budget")
# who shares the part of the window that is not kept for interactive requests
_SHARED_BY = "directory syncs, idle sweeps, seat-UID scans and workflow runs"

# KEYS: the window (sorted set of request times), pause for every lane, pause for the sync lane
# (each pause holds the time it ends, in ms). ARGV: now (ms), window (ms), cap for this lane, lane,
# a unique member. Returns 0 when a slot was taken, else milliseconds until one may free up.
_TAKE = """
local now, window, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[4] ~= 'interactive' then paused = math.max(paused, tonumber(redis.call('GET', KEYS[3]) or '0')) end
if paused > now then return paused - now end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= cap then
  -- the entry whose expiry brings the window below this lane's cap
  local oldest = redis.call('ZRANGE', KEYS[1], n - cap, n - cap, 'WITHSCORES')
  return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""

# Per-minute quotas (fixed calendar minutes). KEYS: one counter per quota, for this minute.
# ARGV: each quota's limit, then the counter TTL (ms) and the ms left in this minute. Returns
# {0, 0} when every counter had room (all are then counted), else {ms until the minute ends, the
# 1-based index of the first full quota}. Checked once per request, before the window's slot.
_QUOTAS = """
local n = #KEYS
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i]) then
    return {math.max(1, tonumber(ARGV[n + 2])), i}
  end
end
for i = 1, n do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[n + 1])
end
return {0, 0}
"""

_RATELIMIT = re.compile(r"(?:^|[;,\s])r=(\d+)")
_RESET = re.compile(r"(?:^|[;,\s])t=(\d+)")
_QUOTA = re.compile(r"(?:^|[;,\s])q=(\d+)")


@dataclass(frozen=True)
class Usage:
    used: int
    limit: int
    sync_cap: int


@dataclass(frozen=True)
class Pause:
    """A pause Cloudflare asked for (a 429's Retry-After or a `Ratelimit` header), as honoured here."""

    until: float  # epoch seconds
    source: str  # "Retry-After" or "Ratelimit"
    asked: float  # seconds Cloudflare asked for
    held: float  # seconds honoured: `asked`, at most one window
    lane: str  # "all", or "sync" when only the directory's share waits

    def text(self) -> str:
        until = datetime.fromtimestamp(self.until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        cap = f", honoured for {self.held:g} s at most" if self.held < self.asked else ""
        who = "the directory sync waits" if self.lane == "sync" else "Cloudflare calls wait"
        asked = f"{self.source}: {self.asked:g} s{cap}"
        return f"Cloudflare asked the bot to pause ({asked}); {who} until {until}"

    def as_json(self) -> dict[str, object]:
        return {
            "until": datetime.fromtimestamp(self.until, UTC).isoformat(timespec="seconds"),
            "source": self.source,
            "asked_seconds": self.asked,
            "honoured_seconds": self.held,
            "lane": self.lane,
        }


def parse_ratelimit(headers: Mapping[str, str]) -> tuple[int | None, float | None, int | None]:
    """(remaining, seconds until more quota, policy quota) from Cloudflare's IETF-draft headers."""
    raw = headers.get("ratelimit") or ""
    policy = headers.get("ratelimit-policy") or ""
    r, t, q = _RATELIMIT.search(raw), _RESET.search(raw), _QUOTA.search(policy)
    return (
        int(r.group(1)) if r else None,
        float(t.group(1)) if t else None,
        int(q.group(1)) if q else None,
    )


class RateBudget:
    """`await budget.take(lane)` before each Cloudflare request; `observe` each answer's headers."""

    def __init__(
        self,
        redis: aredis.Redis,
        *,
        limit: int = 1200,
        window: float = 300.0,
        share: float = 0.5,
        margin: float = 2.0,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1 or not 0 < share < 1:
            raise ValueError("limit must be at least 1 and share between 0 and 1")
        self.limit = limit
        self.window = window
        self.share = share
        # A request is counted here before Cloudflare sees it; the margin keeps our window a little
        # longer than Cloudflare's so a slot freed here is always free there too.
        self._window_ms = int((window + margin) * 1000)
        self._keys = [f"{prefix}:window", f"{prefix}:pause", f"{prefix}:pause:sync"]
        # the latest pause Cloudflare asked for (JSON, for people): for every lane, for the sync lane
        self._why = {"all": f"{prefix}:pause:why", "sync": f"{prefix}:pause:why:sync"}
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._quotas = redis.register_script(_QUOTAS)
        self._prefix = prefix
        self._clock = clock
        self._sleep = sleep

    @property
    def sync_cap(self) -> int:
        return max(1, int(self.limit * self.share))

    async def take(self, lane: Lane = "interactive", *, max_wait: float | None = None) -> float:
        """Wait for a slot in `lane`; returns seconds waited. BudgetExhausted if more than `max_wait`.
        Inside `bot.domain.spend.charged(...)` the slot is taken on that lane, within its quotas."""
        charge = spend.current()
        quotas: tuple[spend.Quota, ...] = ()
        if charge is not None and lane != "sync":  # a sync is background work already
            lane, quotas = charge.lane, charge.quotas
        waited = 0.0
        while True:
            full = None
            if quotas:
                wait, full = await self._try_quotas(quotas)
                if wait <= 0:
                    quotas = ()  # counted once for this request, however long the window makes it wait
            if not quotas:
                wait = await self._try(lane)
            if wait <= 0:
                metrics.BUDGET_TAKEN.labels(lane).inc()
                return waited
            if max_wait is not None and waited + wait > max_wait:
                if full is not None:
                    raise BudgetExhausted(
                        f"the Cloudflare budget for {full.what} ({full.per_minute} requests per minute) "
                        f"is used up; more room in {wait:.0f} s"
                    )
                pause = await self.pause()
                if pause is not None and (pause.lane == "all" or lane != "interactive"):
                    raise BudgetExhausted(f"{pause.text()}; more room in {wait:.0f} s")
                if lane != "interactive":  # admins' room is untouched: say which part is full
                    raise BudgetExhausted(
                        f"the part of the Cloudflare rate budget that {_SHARED_BY} may use "
                        f"({self.sync_cap} of {self.limit} requests per {self.window / 60:g} min) is used "
                        f"up; more room in {wait:.0f} s"
                    )
                raise BudgetExhausted(
                    f"the shared Cloudflare rate budget ({self.limit} requests per "
                    f"{self.window / 60:g} min) is used up; more room in {wait:.0f} s"
                )
            step = min(wait, 5.0)  # re-check: a pause may lift or the window may slide sooner
            await self._sleep(step)
            waited += step

    async def _try_quotas(self, quotas: tuple[spend.Quota, ...]) -> tuple[float, spend.Quota | None]:
        now_ms = int(self._clock() * 1000)
        minute = now_ms // 60_000
        keys = [f"{self._prefix}:quota:{q.name}:{minute}" for q in quotas]
        left_ms = (minute + 1) * 60_000 - now_ms
        try:
            wait_ms, index = await self._quotas(
                keys=keys, args=[*(q.per_minute for q in quotas), 120_000, left_ms]
            )
        except RedisError as exc:  # as for the window: bookkeeping never blocks a request
            log.warning("rate budget unavailable (%s): quota not counted", type(exc).__name__)
            return 0.0, None
        return float(wait_ms) / 1000, (quotas[int(index) - 1] if int(index) else None)

    async def _try(self, lane: Lane) -> float:
        cap = self.limit if lane == "interactive" else self.sync_cap
        now_ms = int(self._clock() * 1000)
        try:
            wait_ms = await self._take(
                keys=self._keys,
                args=[now_ms, self._window_ms, cap, lane, f"{now_ms}-{lane}-{secrets.token_hex(4)}"],
            )
        except RedisError as exc:  # never let budget bookkeeping block a revoke
            log.warning("rate budget unavailable (%s): request sent without it", type(exc).__name__)
            return 0.0
        return float(wait_ms) / 1000

    async def observe(self, headers: Mapping[str, str], *, retry_after: float | None = None) -> None:
        """Slow down before Cloudflare says 429: honour its remaining quota for every process."""
        remaining, reset, quota = parse_ratelimit(headers)
        if quota is not None and quota < self.limit:
            self.limit = quota  # the token's real quota is lower than configured
        pauses: list[tuple[str, float, str]] = []
        if retry_after:
            pauses.append((self._keys[1], retry_after, "Retry-After"))
        if remaining is not None and reset:
            if remaining <= 1:
                pauses.append((self._keys[1], reset, "Ratelimit"))
            elif remaining <= self.limit - self.sync_cap:  # only the interactive reserve is left
                pauses.append((self._keys[2], reset, "Ratelimit"))
        if not pauses:
            return
        now = self._clock()
        now_ms = int(now * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, asked, source in pauses:
                    seconds = min(asked, self.window)  # a header cannot stop us for longer than a window
                    ms = max(1, int(seconds * 1000))
                    pipe.set(key, now_ms + ms, px=ms + 60_000)  # the end time; the TTL only tidies up
                    lane = "sync" if key == self._keys[2] else "all"
                    why = Pause(now + seconds, source, asked, seconds, lane)
                    pipe.set(self._why[lane], json.dumps(why.__dict__), px=ms + 60_000)
                    if seconds < asked:
                        log.warning("%s", why.text(), extra={"pause": why.as_json()})
                await pipe.execute()
        except RedisError as exc:
            log.warning("rate budget unavailable (%s): pause not shared", type(exc).__name__)

    async def pause(self) -> Pause | None:
        """The pause Cloudflare asked for that is still running, every lane's first (None when there is
        none, or Redis cannot say)."""
        try:
            raws = await self._redis.mget([self._why["all"], self._why["sync"]])
        except RedisError:
            return None
        for raw in raws:
            try:
                pause = Pause(**json.loads(raw)) if raw else None
            except (TypeError, ValueError):
                continue
            if pause is not None and pause.until > self._clock():
                return pause
        return None

    async def usage(self) -> Usage:
        """Requests counted in the current window (for status and benchmarks)."""
        now_ms = int(self._clock() * 1000)
        used = await self._redis.zcount(self._keys[0], now_ms - self._window_ms, "+inf")
        return Usage(int(used), self.limit, self.sync_cap)

    async def used_by_lane(self) -> dict[str, int]:
        """Requests in the current window by lane (each member is `<ms>-<lane>-<random>`), for /metrics."""
        now_ms = int(self._clock() * 1000)
        members = await self._redis.zrangebyscore(self._keys[0], now_ms - self._window_ms, "+inf")
        counts: dict[str, int] = {}
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            parts = text.split("-")
            lane = parts[1] if len(parts) == 3 else "unknown"  # one written before lanes were kept
            counts[lane] = counts.get(lane, 0) + 1
        return counts
