"""Socket Mode: the same Bolt app over Slack's WebSocket, for development without a public URL."""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import Responder, build_bolt_app, slack_client
from bot.config import Settings
from bot.logs import redact
from bot.runtime import build_runtime
from bot.slack_directory import SlackDirectory

log = logging.getLogger("seatbot.socket")


async def run_socket_mode(settings: Settings) -> None:
    assert settings.slack_bot_token is not None and settings.slack_app_token is not None
    redact.add(settings.secrets())
    client = slack_client(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    runtime = build_runtime(settings, directory=SlackDirectory(client))
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    responder = Responder()
    runtime.closers.append(responder.aclose)
    app = build_bolt_app(
        flow=runtime.flow,
        client=client,
        responder=responder,
        signing_secret=secret,
        audit_channel=settings.seatbot_audit_channel,
    )
    handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
    log.info("connecting to Slack over Socket Mode")
    try:
        await handler.start_async()  # type: ignore[no-untyped-call]
    finally:
        await runtime.aclose()
