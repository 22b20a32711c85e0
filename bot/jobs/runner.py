"""Background jobs on Redis with saq: deferred jobs at a time, unique keys, run once Redis-wide.

Every process that runs the bot (web workers, Socket Mode, the shell) runs one small saq worker
on the same queue by default, so a single `web` process needs nothing more. saq keeps jobs in
Redis (they survive restarts of every process), moves a due job to the queue with one atomic
script under a Redis-wide lock, and hands each queued job to one worker (BLMOVE). What a job
does must still be safe to run twice (a worker that dies mid-job is retried): see
bot/state/schedules.py for how a scheduled removal makes sure it acts once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from saq import Worker
from saq.queue.redis import RedisQueue
from saq.types import Context

from bot import metrics
from bot.state.keys import TAG

log = logging.getLogger("seatbot.jobs")

JobFunction = Callable[..., Awaitable[Any]]
QUEUE = "seatbot"
SWEEP_SECONDS = 60  # saq's default: how often one process looks for jobs stuck on a dead worker


class _Quiet(logging.Filter):
    """Shutdown noise: saq warns that it cancelled a worker's blocking dequeue, and its stop() leaves
    a cancelled gather that asyncio reports as never retrieved. Both are the normal way it stops."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "did not finish within the shutdown grace period" in text:
            return False
        return not ("_GatheringFuture exception was never retrieved" in text and "CancelledError" in text)


logging.getLogger("saq").addFilter(_Quiet())
logging.getLogger("asyncio").addFilter(_Quiet())


class _EmbeddedWorker(Worker[Context]):
    SIGNALS: list[Any] = []  # noqa: RUF012 - the host process (uvicorn, the shell) owns SIGINT/SIGTERM


class _InProcessQueue(RedisQueue):
    """The in-process store (fakeredis) has no INFO command; it speaks Redis 7's commands."""

    async def version(self) -> tuple[int, ...]:
        return (7, 2, 0)


def lag(ctx: Context) -> float | None:
    """Seconds from the job's due time (its enqueue time when it had none) to its start."""
    job = ctx.get("job")
    if job is None or not job.started:
        return None
    due = job.scheduled or job.queued / 1000  # saq: `scheduled` in seconds, `queued`/`started` in ms
    return job.started / 1000 - due if due else None


def queue_name(redis: aredis.Redis) -> str:
    """saq's queue: its keys are `saq:<name>:…` and `saq:job:<name>:<key>`. On Redis Cluster the
    name is the bot's hash tag, so saq's scripts and MULTI blocks (which span its lists, sorted
    sets and job records) stay in one slot. Elsewhere it keeps the name it always had, so jobs
    queued by an earlier release still run."""
    return TAG if isinstance(redis, RedisCluster) else QUEUE


class JobRunner:
    """Enqueue jobs for later and run them; `start()` in a process that should run jobs."""

    def __init__(
        self,
        redis: aredis.Redis,
        *,
        in_process: bool = False,
        concurrency: int = 3,  # a directory sync may hold one for minutes; removals keep two
        dequeue_timeout: float = 5.0,
    ) -> None:
        queue_type = _InProcessQueue if in_process else RedisQueue
        self.redis = redis
        self.queue = queue_type(redis, name=queue_name(redis))
        self._functions: dict[str, JobFunction] = {}
        self._concurrency = concurrency
        self._dequeue_timeout = dequeue_timeout
        self._worker: Worker[Context] | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_start: list[Callable[[], Awaitable[None]]] = []

    def register(self, name: str, function: JobFunction) -> None:
        """`function(**kwargs)` runs for each job enqueued under `name`."""
        self._functions[name] = function

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def died(self) -> bool:
        """Started, and its task ended without stop(): restarting the process is the cure."""
        return self._task is not None and self._task.done()

    async def enqueue_at(
        self, name: str, *, key: str, at: float, run_timeout: int = 600, retries: int = 3, **kwargs: Any
    ) -> bool:
        """Run `name(**kwargs)` at `at` (epoch seconds); False if a job with `key` already exists."""
        job = await self.queue.enqueue(
            name,
            key=self._key(key),
            scheduled=at,  # saq compares it with the time in seconds; fractions are kept
            timeout=run_timeout,
            retries=retries,
            retry_delay=5.0,
            retry_backoff=True,
            ttl=600,
            kwargs=kwargs,
        )
        return job is not None

    async def alive(self) -> bool:
        """Whether a job runner (this one or another process's) is alive on this queue; True when
        Redis cannot tell (what is enqueued stays there for the next runner)."""
        if self.running:
            return True
        try:
            return bool((await self.queue.info()).get("workers"))
        except Exception:
            return True

    async def cancel(self, key: str) -> None:
        """Drop a job that has not started (a started one finishes; the job itself checks state)."""
        job = await self.queue.job(self._key(key))
        if job is not None and not job.completed:
            await self.queue.abort(job, "cancelled")

    def _key(self, key: str) -> str:
        """A job's key; on a cluster it starts with the hash tag, as saq's abort key
        (`saq:abort:<key>`, written in the same script as the job) has no queue name in it."""
        return TAG + key if self.queue.name == TAG else key

    async def start(self) -> None:
        if self.running:
            return

        def bind(name: str, function: JobFunction) -> Callable[..., Awaitable[Any]]:
            async def call(ctx: Context, **kwargs: Any) -> Any:
                metrics.job(name, lag=lag(ctx))
                try:
                    result = await function(**kwargs)
                except Exception:
                    metrics.job(name, failed=True)
                    raise
                metrics.job(name, failed=False)
                return result

            return call

        functions = [(name, bind(name, fn)) for name, fn in self._functions.items()]
        self._worker = _EmbeddedWorker(
            self.queue,
            functions=functions,
            concurrency=self._concurrency,
            dequeue_timeout=self._dequeue_timeout,
            # saq writes it to Redis every 10 s: `check` names the live runners (bot/jobs/status.py)
            metadata={"host": socket.gethostname(), "pid": os.getpid()},
        )
        # saq's sweep aborts a job it finds in the active list still marked queued: one a worker
        # has just taken (saq issues #124, #277), and the worker's first sweep runs as it takes the
        # jobs that are due at start. Sweeping first takes the Redis-wide sweep lock for a period,
        # so no sweep runs while this worker takes its first jobs.
        try:
            await self.queue.sweep(lock=SWEEP_SECONDS)
        except Exception:
            log.warning("could not sweep the job queue at start", exc_info=True)
        for hook in self.on_start:
            await hook()
        try:  # listed as alive from now on (saq's own upkeep refreshes it every 10 s)
            await self._worker.worker_info(ttl=self._worker.timers["worker_info"] + 1)
        except Exception:
            log.warning("could not register the job runner as alive", exc_info=True)
        self._task = asyncio.create_task(self._worker.start(), name="seatbot-jobs")
        log.info("job runner started (queue %s)", QUEUE)

    async def stop(self) -> None:
        # Set the worker's stop event, then cancel its tasks until they are done: saq's upkeep
        # loops swallow a cancellation that lands mid-call and would sleep a full period (60 s).
        worker, task = self._worker, self._task
        self._worker = self._task = None
        if worker is None or task is None:
            return
        worker.event.set()
        task.cancel()
        pending = {task, *worker.tasks}
        for _ in range(50):
            worker.event.set()  # start() may have made a fresh event after ours
            for running in pending:
                running.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
            pending |= {t for t in worker.tasks if not t.done()}
            if not pending:
                break
        else:
            log.warning("job runner did not stop cleanly")
        await self._forget(worker)

    async def _forget(self, worker: Worker[Context]) -> None:
        """A runner that stopped leaves saq's list of live workers now, not when its entry expires."""
        key = self.queue.namespace(f"worker_info:{worker.id}")
        try:
            await self.redis.delete(key)
            await self.redis.zrem(self.queue.namespace("stats"), key)
        except Exception:  # Redis gone: the entry expires in seconds anyway
            log.debug("could not remove the runner's worker info", exc_info=True)
