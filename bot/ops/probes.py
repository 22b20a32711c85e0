"""What /healthz, /readyz and /metrics answer, for every process kind (HTTP, Socket Mode, jobs).

- `/healthz` (liveness): 200 while the process serves, whatever Redis does. Restarting a process
  does not bring Redis back, and a process that stays up answers Slack "temporarily unavailable,
  nothing was changed" meanwhile. Its body still shows Redis and the directory, for people, read
  within `INFO_SECONDS` so a slow Redis cannot make the probe itself time out. A `jobs` process
  whose runner stopped is not alive (503): restarting it is the cure.
- `/readyz` (readiness): 503 while Redis is unreachable (and, for Socket Mode, while Slack's socket
  is not connected; for `jobs`, while the runner is not running).
- `/metrics`: Prometheus text, only with SEATBOT_METRICS_TOKEN set and only for a request bearing
  it. The counters are bot/metrics.py's (added up across workers in multiprocess mode); the rate
  budget, the directory and the job queue are read from Redis at scrape time, so every process
  reports the same shared figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bot import __version__
from bot.app.directory_sync import directory_health
from bot.cloudflare.budget import Lane, RateBudget
from bot.config import Settings
from bot.redis_watch import last_wipe
from bot.runtime import Runtime
from bot.state.redis import redis_status

CONTENT_TYPE = CONTENT_TYPE_LATEST
INFO_SECONDS = 0.5  # /healthz's Redis facts wait no longer (probes time out after ~1 s)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="seatbot metrics"'}
Check = Callable[[], Awaitable[tuple[str, bool]]]  # (what it says, whether that is ready)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class Probes:
    """The three answers for one process; `role` is serve, socket or jobs."""

    runtime: Runtime
    role: str = "serve"
    checks: dict[str, Check] = field(default_factory=dict)  # extra readiness facts (slack, job_runner)
    clock: Callable[[], float] = time.time

    @property
    def metrics_token(self) -> str | None:
        token = self.runtime.settings.seatbot_metrics_token
        return token.get_secret_value() if token is not None and token.get_secret_value() else None

    async def redis(self) -> str:
        return "in-process" if self.runtime.in_process_store else await redis_status(self.runtime.redis)

    async def live(self) -> Answer:
        body: dict[str, Any] = {"ok": True, "redis": "no answer in time", "version": __version__}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INFO_SECONDS):
                body["redis"] = await self.redis()
                body["directory"] = await directory_health(self.runtime.directory_sync)
                budget = self.runtime.budget
                pause = await budget.pause() if budget is not None else None
                if pause is not None:  # only while one runs: Cloudflare asked every process to wait
                    body["cloudflare_pause"] = pause.as_json()
                if self.runtime.watch is not None and (wipe := await last_wipe(self.runtime.redis)):
                    body["redis_wiped"] = wipe.as_json()  # for a week after Redis was found empty
        jobs = self.runtime.jobs
        if self.role == "jobs" and jobs is not None:  # starting is alive; a runner that died is not
            body["ok"] = not jobs.died
            body["job_runner"] = "running" if jobs.running else "stopped" if jobs.died else "starting"
        return Answer(200 if body["ok"] else 503, body)

    async def ready(self) -> Answer:
        store = await self.redis()
        body: dict[str, Any] = {"ready": store != "unreachable", "redis": store}
        for name, check in self.checks.items():
            said, ok = await check()
            body[name] = said
            body["ready"] = body["ready"] and ok
        return Answer(200 if body["ready"] else 503, body)

    def allowed(self, authorization: str | None) -> bool:
        """The request bears `Authorization: Bearer <SEATBOT_METRICS_TOKEN>` (compared in constant time)."""
        token = self.metrics_token
        if token is None or not authorization:
            return False
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    async def metrics(self) -> bytes:
        """The exposition: this process's (or every worker's) counters and the shared Redis figures."""
        shared = await self.shared()
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(shared)
            return generate_latest(registry)
        return generate_latest(_Both(REGISTRY, shared))

    async def shared(self) -> _Fixed:
        """Gauges read from Redis now: the rate budget per lane, the directory, the job queue."""
        build = GaugeMetricFamily("seatbot_build_info", "Always 1: the running version", labels=["version"])
        build.add_metric([__version__], 1.0)
        families: list[GaugeMetricFamily] = [build]
        store = await self.redis()
        up = GaugeMetricFamily("seatbot_redis_up", "1 when this process reaches its Redis store")
        up.add_metric([], 0.0 if store == "unreachable" else 1.0)
        families.append(up)
        if store == "unreachable":
            return _Fixed(families)
        budget = self.runtime.budget
        if budget is not None:
            families += await _budget(budget)
        families += await self._directory()
        families += await self._jobs()
        return _Fixed(families)

    async def _directory(self) -> list[GaugeMetricFamily]:
        try:
            status = await self.runtime.directory_sync.status()
        except Exception:
            return []
        users = GaugeMetricFamily("seatbot_directory_users", "Users in the seat directory's last sync")
        users.add_metric([], float(status.users))
        state = GaugeMetricFamily(
            "seatbot_directory_state", "1 for the seat directory's state", labels=["state"]
        )
        for name in ("ready", "syncing", "empty", "off"):
            state.add_metric([name], 1.0 if status.state == name else 0.0)
        found = [users, state]
        if status.synced_at is not None:
            age = GaugeMetricFamily(
                "seatbot_directory_age_seconds", "Seconds since the seat directory's last complete sync"
            )
            age.add_metric([], max(0.0, self.clock() - status.synced_at))
            found.append(age)
        return found

    async def _jobs(self) -> list[GaugeMetricFamily]:
        jobs = self.runtime.jobs
        if jobs is None:
            return []
        queue = jobs.queue
        try:
            info = await queue.info()
            # saq's sorted set of unfinished jobs by due time; a due job leaves it (score 0) once a
            # runner has moved it to the queue, so the oldest score in (0, now] is time nobody picked it up
            due = await jobs.redis.zrangebyscore(
                queue.namespace("incomplete"), 1, self.clock(), start=0, num=1, withscores=True
            )
        except Exception:  # a scrape never fails on this part
            return []
        runners = GaugeMetricFamily("seatbot_job_runners", "Job runners alive on this Redis (saq workers)")
        runners.add_metric([], float(len(info.get("workers") or {})))
        queued = GaugeMetricFamily("seatbot_jobs_queued", "Jobs due and waiting for a free runner slot")
        queued.add_metric([], float(info.get("queued") or 0))
        overdue = GaugeMetricFamily(
            "seatbot_jobs_overdue_seconds",
            "How long the oldest due job has waited for a runner to pick it up (0: none waits)",
        )
        overdue.add_metric([], max(0.0, self.clock() - float(due[0][1])) if due else 0.0)
        return [runners, queued, overdue]


async def _budget(budget: RateBudget) -> list[GaugeMetricFamily]:
    try:
        used_by = await budget.used_by_lane()
    except Exception:  # a scrape never fails on this part
        return []
    total = sum(used_by.values())
    used = GaugeMetricFamily(
        "seatbot_rate_budget_used",
        "Cloudflare requests counted in the shared rate budget's current window, by lane",
        labels=["lane"],
    )
    remaining = GaugeMetricFamily(
        "seatbot_rate_budget_remaining",
        "Requests a lane may still start in the current window (every lane shares one window)",
        labels=["lane"],
    )
    for lane in get_args(Lane):
        cap = budget.limit if lane == "interactive" else budget.sync_cap
        used.add_metric([lane], float(used_by.get(lane, 0)))
        remaining.add_metric([lane], float(max(0, cap - total)))
    limit = GaugeMetricFamily("seatbot_rate_budget_limit", "Requests per window the token may make")
    limit.add_metric([], float(budget.limit))
    pause = await budget.pause()
    paused = GaugeMetricFamily(
        "seatbot_cloudflare_pause_seconds", "Seconds left in a pause Cloudflare asked for (0: none runs)"
    )
    paused.add_metric([], max(0.0, pause.until - time.time()) if pause is not None else 0.0)
    return [used, remaining, limit, paused]


class _Fixed:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return list(self.families)


class _Both:
    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self.collectors:
            yield from collector.collect()


@contextlib.contextmanager
def prepare_multiprocess(settings: Settings) -> Iterator[Path | None]:
    """Around uvicorn with workers: a fresh directory where each worker writes its metrics.

    PROMETHEUS_MULTIPROC_DIR if the deployer set one (its old files are removed: counts from a
    previous run would add up with this one's), else, with metrics on and several workers, a
    temporary directory, removed afterwards.
    Workers inherit it through the environment; prometheus_client reads it when they import it.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:  # in use even with one worker: prometheus_client writes there whenever it is set
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink(missing_ok=True)
        yield path
        return
    if settings.seatbot_metrics_token is None or settings.web_concurrency < 2:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="seatbot-metrics-") as made:
        os.environ[MULTIPROC_ENV] = made
        try:
            yield Path(made)
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
