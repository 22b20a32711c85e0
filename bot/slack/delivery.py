"""Sending replies through response_url: one pooled session, secrets redacted, placement honoured."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.logs import redact
from bot.slack import blocks
from bot.slack.replies import Reply

log = logging.getLogger("seatbot.delivery")


class Respond(Protocol):
    """The part of Bolt's `AsyncRespond` we use; `Responder.to` gives one on a pooled session."""

    async def __call__(
        self,
        text: str = "",
        blocks: Sequence[dict[str, Any]] | None = None,
        *,
        response_type: str | None = None,
        replace_original: bool | None = None,
    ) -> WebhookResponse: ...


_HOW: dict[str, dict[str, Any]] = {
    "ephemeral": {"response_type": "ephemeral", "replace_original": False},
    "in_channel": {"response_type": "in_channel", "replace_original": False},
    "replace": {"replace_original": True},
    "replace_in_channel": {"replace_original": True, "response_type": "in_channel"},
}


async def send(respond: Respond, message: blocks.Message, **how: Any) -> bool:
    """Deliver through response_url (True when Slack took it); secrets are redacted on the way."""
    clean = json.loads(redact(json.dumps(message)))
    response = await respond(text=clean["text"], blocks=clean["blocks"], **how)
    return response.status_code < 400


async def deliver(respond: Respond, reply: Reply, *, first: bool = False) -> bool:
    """Send `reply` where it belongs; `first` marks a command's initial answer (no card to replace)."""
    how = dict(_HOW[reply.placement])
    if first:
        how.pop("replace_original", None)
    posted = await send(respond, reply.message, **how)
    if reply.then is not None:
        await send(respond, reply.then if posted else reply.message, replace_original=True)
    return posted


class Responder:
    """Posts to response_urls through slack_sdk's webhook client on one pooled aiohttp session.

    Bolt's `respond` opens a new HTTP session per message; under load that costs more than the
    rest of a reply, so every reply of this process shares one session instead.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def to(self, url: str) -> Respond:
        async def respond(
            text: str = "",
            blocks: Sequence[dict[str, Any]] | None = None,
            *,
            response_type: str | None = None,
            replace_original: bool | None = None,
        ) -> WebhookResponse:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            client = AsyncWebhookClient(url, timeout=10, session=self._session)
            client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
            message = {
                "text": text,
                "blocks": blocks,
                "response_type": response_type,
                "replace_original": replace_original,
            }
            payload = {k: v for k, v in message.items() if v is not None}
            response = await client.send_dict(payload)
            if response.status_code >= 400:
                log.warning("response_url answered %s: %s", response.status_code, response.body[:200])
            return response

        return respond

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
