"""Socket Mode: the same Bolt app over Slack's WebSocket, for development without a public URL."""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot import metrics
from bot.config import Settings
from bot.ops.probes import Probes
from bot.slack.health import start_health
from bot.slack.server import settle_heap
from bot.slack.wiring import build_slack

log = logging.getLogger("seatbot.socket")


async def run_socket_mode(settings: Settings) -> None:
    # Slack's socket authenticates the connection; there are no request signatures to check.
    runtime, app = build_slack(settings, verify_signatures=False)
    handler = AsyncSocketModeHandler(app, settings.app_token())

    async def slack() -> tuple[str, bool]:
        connected = bool(await handler.client.is_connected())
        return ("connected" if connected else "not connected"), connected

    health = None
    try:
        health = await start_health(settings, Probes(runtime, role="socket", checks={"slack": slack}))
        log.info("connecting to Slack over Socket Mode")
        await runtime.start_jobs()  # the job runner: schedules, paused sweeps, the directory's refresh
        settle_heap()
        metrics.STARTS.labels("socket").inc()
        await handler.start_async()  # type: ignore[no-untyped-call]
    finally:
        if health is not None:
            await health.stop()
        await runtime.aclose()
