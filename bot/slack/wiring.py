"""Everything one process needs to serve Slack (HTTP or Socket Mode), built from its settings."""

from __future__ import annotations

import asyncio
import signal

import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.config import Settings
from bot.logs import redact
from bot.ops.probes import Probes
from bot.ops.startup import quiet_bolt
from bot.redis_watch import Wipe
from bot.runtime import Runtime, build_runtime
from bot.slack.delivery import Responder
from bot.slack.files import announcer, publisher, report_poster
from bot.slack.health import start_health
from bot.slack.home_listeners import register_home
from bot.slack.idle_listeners import register_idle_actions
from bot.slack.kit import esc, section
from bot.slack.lanes import Lane
from bot.slack.listeners import build_bolt_app
from bot.slack.outbox import Outbox, SlackPoster
from bot.slack.people import SlackDirectory
from bot.slack.schedule_listeners import register_schedule_listeners, slack_announcer
from bot.slack.workflow_step import register_workflow_step
from bot.state.outbox import OutboxStore


def slack_client(*, token: str, base_url: str) -> AsyncWebClient:
    """A Web API client that waits out Slack's 429s (Retry-After) instead of failing."""
    client = AsyncWebClient(token=token, base_url=base_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    return client


def build_slack(
    settings: Settings,
    *,
    verify_signatures: bool = True,
    seats_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Runtime, AsyncApp]:
    """The runtime and the Bolt app; `verify_signatures=False` for Socket Mode and behind `edge`."""
    redact.add(settings.secrets())
    quiet_bolt()
    client = slack_client(token=settings.bot_token(), base_url=settings.slack_api_url)
    runtime = build_runtime(settings, directory=SlackDirectory(client), seats_transport=seats_transport)
    outbox = Outbox(
        store=OutboxStore(runtime.redis),
        poster=SlackPoster(client, deadline=settings.seatbot_slack_retry_seconds),
        every=settings.seatbot_outbox_retry_seconds,
    )
    if runtime.jobs is not None:  # kept messages are tried again on the job runner, once Redis-wide
        outbox.attach(runtime.jobs)
    if runtime.schedules is not None:
        runtime.schedules.announce = slack_announcer(outbox, audit_channel=settings.seatbot_audit_channel)
    if runtime.home is not None:
        runtime.home.undelivered = outbox.store
    if runtime.watch is not None and settings.seatbot_audit_channel:
        channel = settings.seatbot_audit_channel

        async def tell_wipe(wipe: Wipe) -> None:
            text = f":rotating_light: {esc(wipe.text())}"  # the host name is not ours to trust
            message = {"text": text, "blocks": [section(text)]}
            await outbox.deliver(channel, message, what="Redis wipe notice")

        runtime.watch.on_wipe.append(tell_wipe)
    responder = Responder(client, api_url=settings.slack_api_url, outbox=outbox)
    runtime.closers.append(responder.aclose)
    publish = publisher(client, responder.post_in_channel)
    if runtime.flow.idle is not None:  # a sweep the rate budget paused reports here when done
        runtime.flow.idle.announce = announcer(publish)
    if runtime.idle_report is not None:
        runtime.idle_report.post = report_poster(publish)
    bolt = build_bolt_app(
        flow=runtime.flow,
        client=client,
        responder=responder,
        signing_secret=settings.signing_secret() if verify_signatures else None,
        audit_channel=settings.seatbot_audit_channel,
        outbox=outbox,
        lane=Lane(
            places=settings.seatbot_cloudflare_lane, deadline=settings.seatbot_command_deadline_seconds
        ),
    )
    if runtime.schedules is not None:
        register_schedule_listeners(bolt, schedules=runtime.schedules, responder=responder)
    register_idle_actions(bolt, flow=runtime.flow, responder=responder)
    if runtime.home is not None:
        register_home(bolt, home=runtime.home, client=client, schedules=runtime.schedules)
    if runtime.steps is not None:  # the Workflow Builder step `revoke_seat`
        register_workflow_step(
            bolt, steps=runtime.steps, flow=runtime.flow, client=client, responder=responder
        )
    return runtime, bolt


async def run_job_runner(settings: Settings) -> None:
    """`python -m bot jobs`: the job runner alone, for web processes run with SEATBOT_JOB_RUNNER=false."""
    runtime, _ = build_slack(settings, verify_signatures=False)
    assert runtime.jobs is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # a stopped runner leaves the live list at once
        loop.add_signal_handler(sig, stop.set)
    jobs = runtime.jobs

    async def running() -> tuple[str, bool]:
        return ("running", True) if jobs.running else ("not running", False)

    health = None
    try:
        health = await start_health(settings, Probes(runtime, role="jobs", checks={"job_runner": running}))
        await runtime.start_watch()
        await jobs.start()
        metrics.STARTS.labels("jobs").inc()
        await stop.wait()
    finally:
        if health is not None:
            await health.stop()
        await runtime.aclose()
