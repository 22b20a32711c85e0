"""Socket Mode: the same Bolt app over Slack's WebSocket, for development without a public URL."""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import build_slack
from bot.config import Settings

log = logging.getLogger("seatbot.socket")


async def run_socket_mode(settings: Settings) -> None:
    settings.require("SLACK_APP_TOKEN")
    assert settings.slack_app_token is not None
    # Slack's socket authenticates the connection; there are no request signatures to check.
    runtime, app = build_slack(settings, verify_signatures=False)
    handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
    log.info("connecting to Slack over Socket Mode")
    try:
        await handler.start_async()  # type: ignore[no-untyped-call]
    finally:
        await runtime.aclose()
