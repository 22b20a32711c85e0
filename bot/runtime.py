"""Wiring: build the flow and its parts from Settings, once per process (no Slack here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import redis.asyncio as aredis
from redis.exceptions import RedisError

from bot.app.directory_sync import DirectorySync
from bot.app.flow import SeatFlow
from bot.app.home import Home
from bot.app.idle_report import JOB as REPORT_JOB
from bot.app.idle_report import PeriodicReport
from bot.app.idle_source import DirectorySource, ScanSource
from bot.app.schedule import Announce, Schedules
from bot.app.seat_lookup import SeatLookup
from bot.app.sweep import IdleFlow
from bot.app.sweep_run import RESUME_JOB
from bot.app.workflow import WorkflowLimits, WorkflowSteps
from bot.cloudflare.budget import RateBudget
from bot.cloudflare.client import CloudflareClient
from bot.config import Settings
from bot.domain.idle import Exclusions
from bot.domain.policy import Authorizer, Directory, Policy
from bot.jobs.directory import DirectoryRefresh
from bot.jobs.runner import JobRunner
from bot.jobs.status import warn_if_none
from bot.redis_watch import RedisWatch, Wipe, last_wipe
from bot.state.audit import Audit
from bot.state.directory import SeatDirectory
from bot.state.keys import migrate as migrate_keys
from bot.state.pending import PendingStore
from bot.state.redis import connect_redis
from bot.state.schedules import ScheduleStore
from bot.state.seat_facts import SeatFacts
from bot.state.sweeps import SweepStore

if TYPE_CHECKING:  # the sandbox is devtools: loaded only when the shell asks for it (allow_sandbox)
    from bot.devtools.sandbox import Sandbox

log = logging.getLogger("seatbot.runtime")


@dataclass
class Runtime:
    settings: Settings
    redis: aredis.Redis
    seats: CloudflareClient
    flow: SeatFlow
    directory_sync: DirectorySync
    sandbox: Sandbox | None = None
    home: Home | None = None
    idle_report: PeriodicReport | None = None  # with SEATBOT_IDLE_REPORT_CHANNEL (and a job runner)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    jobs: JobRunner | None = None
    schedules: Schedules | None = None
    steps: WorkflowSteps | None = None
    budget: RateBudget | None = None  # the token's shared rate budget (a pause Cloudflare asked for)
    watch: RedisWatch | None = None  # notices a Redis that lost its data (not for the in-process store)

    @property
    def in_process_store(self) -> bool:
        return self.settings.redis_url is None

    async def start_watch(self) -> None:
        """The Redis marker and its check (bot/redis_watch.py), in every process that serves."""
        if self.watch is not None:
            await self.watch.start()

    async def start_jobs(self) -> None:
        """The background job runner unless SEATBOT_JOB_RUNNER is off: scheduled removals, paused
        sweeps, and the seat directory's refresh (an empty directory's first sync starts at once;
        Slack is served meanwhile and UID look-ups scan until it is ready). First the previous
        release's Redis keys move to this release's names (bot/state/keys.py), once Redis-wide.
        Then the Redis watch starts."""
        try:
            if not self.in_process_store:
                await migrate_keys(self.redis)
        except RedisError as exc:  # Redis down: the next process to start moves them
            log.warning("could not check the Redis key layout (%s)", type(exc).__name__)
        await self.start_watch()
        if self.jobs is not None and self.settings.seatbot_job_runner:
            await self.jobs.start()
        elif self.jobs is not None and not self.in_process_store:  # a warning if nobody runs one
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await warn_if_none(self.redis)

    async def aclose(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        if self.jobs is not None:
            await self.jobs.stop()
            if self.jobs.redis is not self.redis:
                await self.jobs.redis.aclose()
        await self.directory_sync.aclose()
        for close in self.closers:
            await close()
        await self.seats.aclose()
        await self.redis.aclose()


def build_runtime(
    settings: Settings,
    *,
    directory: Directory,
    seats_transport: httpx.AsyncBaseTransport | None = None,
    allow_sandbox: bool = False,
    announce: Announce | None = None,
    origin: dict[str, str] | None = None,
) -> Runtime:
    """The flow with Cloudflare (or, with `allow_sandbox` and no credentials, the sandbox); `origin`
    is added to every audit event (the shell's)."""
    sandbox = None
    redis = connect_redis(settings, warn_in_process=not allow_sandbox)
    budget = RateBudget(
        redis,
        limit=settings.cloudflare_rate_limit,
        window=settings.cloudflare_rate_window_seconds,
        share=settings.seatbot_directory_rate_share,
    )
    if settings.has_cloudflare_credentials or not allow_sandbox:
        seats = CloudflareClient.from_settings(settings, transport=seats_transport, budget=budget)
    else:
        from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
        from bot.devtools.sandbox import Sandbox

        sandbox = Sandbox(synthetic=settings.seatbot_sandbox_users)
        seats = CloudflareClient(
            account_id=DEMO_ACCOUNT_ID,
            auth_headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
            base_url=sandbox.base_url,
            transport=sandbox.transport(),
            budget=budget,
            budget_wait=settings.cloudflare_budget_wait_seconds,
        )
    policy = Policy.from_settings(settings)
    seat_directory = SeatDirectory(redis)
    sync = DirectorySync(
        directory=seat_directory,
        seats=seats,
        refresh_seconds=settings.seatbot_directory_refresh_seconds,
        concurrency=settings.seatbot_directory_concurrency,
        lease_seconds=settings.seatbot_directory_lease_seconds,
    )
    lookup = SeatLookup(
        seats=seats,
        directory=seat_directory if sync.enabled else None,
        concurrency=settings.cloudflare_lookup_concurrency,
    )
    # a revoke ends within the rate budget's wait, Cloudflare's retry deadline and one last attempt (≤ 15 s)
    lease = (
        math.ceil(settings.cloudflare_budget_wait_seconds + settings.cloudflare_retry_deadline_seconds) + 30
    )
    replicas = settings.redis_wait_replicas
    if replicas is None:  # behind Sentinel a failover must not bring back a claimed card
        replicas = 1 if settings.redis_sentinels else 0
    store = PendingStore(
        redis, lease_seconds=lease, replicas=replicas, wait_seconds=settings.redis_timeout_seconds / 2
    )
    audit = Audit(
        redis,
        maxlen=settings.seatbot_audit_maxlen,
        noise_maxlen=settings.seatbot_audit_noise_maxlen,
        noise_per_minute=settings.seatbot_audit_noise_per_minute,
        origin=origin,
    )
    authorizer = Authorizer(policy, directory, cache_seconds=settings.seatbot_group_cache_seconds)
    scan = ScanSource(seats)
    idle = IdleFlow(
        source=DirectorySource(sync=sync, facts=SeatFacts(redis), fallback=scan) if sync.enabled else scan,
        seats=seats,
        pendings=store,
        sweeps=SweepStore(redis),
        audit=audit,
        policy=policy,
        days=settings.seatbot_idle_days,
        exclude=Exclusions.parse(settings.seatbot_idle_exclude),
        retry_seconds=settings.seatbot_sweep_resume_seconds,
        lease=settings.seatbot_sweep_lease_seconds,
    )
    flow = SeatFlow(
        seats=seats,
        store=store,
        audit=audit,
        directory=directory,
        authorizer=authorizer,
        lookup_concurrency=settings.cloudflare_lookup_concurrency,
        idle=idle,
        seat_lookup=lookup,
        directory_sync=sync,
        guide_url=settings.seatbot_help_url,
    )
    home = Home(idle=idle, audit=audit, authorizer=authorizer)
    runtime = Runtime(settings, redis, seats, flow, sync, sandbox, home=home, budget=budget)
    in_process = settings.redis_url is None
    # the runner's blocking reads need a connection with a longer timeout than Slack's paths
    jobs_redis = redis if in_process else connect_redis(settings, timeout=15.0)
    runtime.jobs = JobRunner(jobs_redis, in_process=in_process)
    if not in_process:  # a wiped Redis is noticed, said and its periodic work re-armed
        runtime.watch = RedisWatch(redis, every=settings.seatbot_redis_check_seconds)
        runtime.watch.rearm = runtime.jobs.on_start  # the same arming as at start, whoever adds to it

        async def audit_wipe(wipe: Wipe) -> None:
            await audit.record("redis_wiped", detected_by=wipe.by, why=wipe.text())

        runtime.watch.on_wipe.append(audit_wipe)
    runtime.schedules = Schedules(
        flow=flow,
        store=ScheduleStore(redis),
        jobs=runtime.jobs,
        tz=settings.seatbot_timezone,
        retry_window=settings.seatbot_schedule_retry_seconds,
        lease=settings.seatbot_schedule_lease_seconds,
        announce=announce,
    )
    if runtime.watch is not None:  # `/seat scheduled` says removals made before a wipe were lost

        async def wipes() -> Wipe | None:
            return await last_wipe(redis)

        runtime.schedules.wipes = wipes
    runtime.steps = WorkflowSteps(
        flow=flow, redis=redis, jobs=runtime.jobs, limits=WorkflowLimits.from_settings(settings)
    )
    # a sweep the rate budget paused continues on the job runner (bot/app/sweep.py)
    idle.later = runtime.jobs
    runtime.jobs.register(RESUME_JOB, idle.resume)
    home.schedules = runtime.schedules
    DirectoryRefresh(sync=sync, jobs=runtime.jobs).attach()  # the directory's refresh, once Redis-wide
    if settings.seatbot_idle_report_channel:  # once per run time across processes: the job's key
        report = PeriodicReport(
            idle=idle,
            channel=settings.seatbot_idle_report_channel,
            cron=settings.seatbot_idle_report_cron,
            later=runtime.jobs,
        )
        runtime.jobs.register(REPORT_JOB, report.run)
        runtime.jobs.on_start.append(report.on_start)
        runtime.idle_report = report
    return runtime
