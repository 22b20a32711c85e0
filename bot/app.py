"""Thin Bolt listeners: ack first, then hand over to the flow and deliver its answer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import blocks
from bot.config import Settings
from bot.flow import SeatFlow
from bot.logs import redact, request_scope
from bot.outcomes import (
    AuditReport,
    Cancelled,
    Card,
    ClickReply,
    CommandReply,
    Failure,
    Notice,
    Outcome,
    StatusReport,
)
from bot.pending import Pending
from bot.runtime import Runtime, build_runtime
from bot.slack_directory import SlackDirectory

log = logging.getLogger("seatbot.app")
Respond = Callable[..., Awaitable[Any]]
OOPS = "Something went wrong on the bot's side; nothing was reported done. Request id: {rid}"


def slack_client(*, token: str, base_url: str) -> AsyncWebClient:
    """A Web API client that waits out Slack's 429s (Retry-After) instead of failing."""
    client = AsyncWebClient(token=token, base_url=base_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    return client


async def send(respond: Respond, message: blocks.Message, **how: Any) -> bool:
    """Deliver through response_url (True when Slack took it); secrets are redacted on the way."""
    clean = json.loads(redact(json.dumps(message)))
    response = await respond(text=clean["text"], blocks=clean["blocks"], **how)
    return getattr(response, "status_code", 200) < 400


class Responder:
    """Posts to response_urls through slack_sdk's webhook client on one pooled aiohttp session.

    Bolt's `respond` opens a new HTTP session per message; under load that costs more than the
    rest of a reply, so every reply of this process shares one session instead.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def to(self, url: str) -> Respond:
        async def respond(**message: Any) -> Any:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            client = AsyncWebhookClient(url, timeout=10, session=self._session)
            client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
            payload = {k: v for k, v in message.items() if v is not None}
            response = await client.send_dict(payload)
            if response.status_code >= 400:
                log.warning("response_url answered %s: %s", response.status_code, response.body[:200])
            return response

        return respond

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def render_command(reply: CommandReply) -> blocks.Message:
    if isinstance(reply, Card):
        message = blocks.card(reply)
        if reply.pending.two_person:
            message["response_type"] = "in_channel"  # others must see it to confirm it
        return message
    if isinstance(reply, StatusReport):
        return blocks.status_report(reply)
    if isinstance(reply, AuditReport):
        return blocks.audit_report(reply)
    return blocks.notice(reply)


def build_bolt_app(
    *,
    flow: SeatFlow,
    client: AsyncWebClient,
    signing_secret: str | None,
    responder: Responder,
    audit_channel: str | None = None,
    background_limit: int = 4,
) -> AsyncApp:
    """Bolt app; `signing_secret=None` only for Socket Mode, where Slack's socket replaces signatures."""
    # Work after the ack waits its turn, so a burst of commands cannot starve the acks of the next.
    work = asyncio.Semaphore(background_limit)
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
    )

    async def to_audit_channel(message: blocks.Message) -> None:
        if not audit_channel:
            return
        try:
            await client.chat_postMessage(
                channel=audit_channel, text=message["text"], blocks=message["blocks"]
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error == "not_in_channel":
                log.error(
                    "cannot post to SEATBOT_AUDIT_CHANNEL %s: the bot is not in it; invite it with /invite",
                    audit_channel,
                )
            else:
                log.error("posting to SEATBOT_AUDIT_CHANNEL failed: %s", error)
        except Exception:
            log.exception("posting to SEATBOT_AUDIT_CHANNEL failed")

    @app.command("/seat")
    async def seat_command(ack: Any, body: dict[str, Any]) -> None:
        await ack()  # before anything slow: Slack gives up after 3 seconds
        respond = responder.to(str(body.get("response_url", "")))
        async with work:
            with request_scope() as rid:
                try:
                    reply = await flow.command(
                        user=str(body.get("user_id", "")),
                        channel=str(body.get("channel_id", "")),
                        text=str(body.get("text", "")),
                    )
                    message = render_command(reply)
                    await send(respond, message, response_type=message.get("response_type", "ephemeral"))
                except Exception:
                    log.exception("command failed")
                    await send(respond, blocks.notice(Notice(OOPS.format(rid=rid), kind="error")))

    async def on_click(action_name: Literal["confirm", "cancel"], body: dict[str, Any]) -> None:
        respond = responder.to(str(body.get("response_url", "")))
        actions = body.get("actions") or [{}]
        pending_id = str(actions[0].get("value", ""))[:64]
        user = str((body.get("user") or {}).get("id", ""))
        with request_scope() as rid:
            try:

                async def progress(pending: Pending) -> None:
                    await send(respond, blocks.progress(pending), replace_original=True)

                reply = await flow.click(
                    action=action_name, pending_id=pending_id, user=user, progress=progress
                )
                await deliver_click(reply, respond)
                if isinstance(reply, Outcome):
                    await to_audit_channel(blocks.outcome(reply))
                elif isinstance(reply, Failure):
                    await to_audit_channel(blocks.failure(dataclasses.replace(reply, retry=None)))
                elif isinstance(reply, Cancelled):
                    await to_audit_channel(blocks.cancelled(reply))
            except Exception:
                log.exception("click failed")
                await send(
                    respond,
                    blocks.notice(Notice(OOPS.format(rid=rid), kind="error")),
                    response_type="ephemeral",
                    replace_original=False,
                )

    @app.action("seat_confirm")
    async def seat_confirm(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        await on_click("confirm", body)

    @app.action("seat_cancel")
    async def seat_cancel(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        await on_click("cancel", body)

    return app


async def deliver_click(reply: ClickReply, respond: Respond) -> None:
    """Where each answer goes: refusals to the clicker only, outcomes into the channel."""
    if isinstance(reply, Notice):
        if reply.replace:
            await send(respond, blocks.notice(reply), replace_original=True)
        else:
            await send(respond, blocks.notice(reply), response_type="ephemeral", replace_original=False)
    elif isinstance(reply, Cancelled):
        await send(respond, blocks.cancelled(reply), replace_original=True)
    elif isinstance(reply, Failure):
        await send(respond, blocks.failure(reply), replace_original=True)
    elif reply.pending.two_person:
        await send(respond, blocks.outcome(reply), replace_original=True, response_type="in_channel")
    else:
        posted = await send(
            respond, blocks.outcome(reply), response_type="in_channel", replace_original=False
        )
        # Only say "posted in the channel" when it was; otherwise the card itself shows the outcome.
        note = blocks.done_note() if posted else blocks.outcome(reply)
        await send(respond, note, replace_original=True)


def build_slack(
    settings: Settings,
    *,
    verify_signatures: bool = True,
    seats_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Runtime, AsyncApp]:
    """Everything one process needs to serve Slack (HTTP or Socket Mode) from its settings."""
    settings.require("SLACK_BOT_TOKEN")
    assert settings.slack_bot_token is not None
    redact.add(settings.secrets())
    client = slack_client(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    runtime = build_runtime(settings, directory=SlackDirectory(client), seats_transport=seats_transport)
    responder = Responder()
    runtime.closers.append(responder.aclose)
    secret = settings.slack_signing_secret
    bolt = build_bolt_app(
        flow=runtime.flow,
        client=client,
        responder=responder,
        signing_secret=secret.get_secret_value() if verify_signatures and secret else None,
        audit_channel=settings.seatbot_audit_channel,
    )
    return runtime, bolt
