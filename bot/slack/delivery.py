"""Sending replies: through response_url when it is Slack's, else through the Web API.

A response_url comes inside the request, so it is only trusted when it is `https://hooks.slack.com/…`
(exact host, default port, no user-info) or on the origin of SLACK_API_URL (a proxy, tests); no
redirect is ever followed. Anything else is answered with chat.postEphemeral / chat.postMessage
and a warning in the log. Secrets are redacted from every message on the way out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.logs import redact
from bot.slack import blocks
from bot.slack.outbox import Outbox, refusal
from bot.slack.replies import Reply

log = logging.getLogger("seatbot.delivery")


class Respond(Protocol):
    """Bolt's `AsyncRespond` call shape, answering whether Slack took the message."""

    async def __call__(
        self,
        text: str = "",
        blocks: Sequence[dict[str, Any]] | None = None,
        *,
        response_type: str | None = None,
        replace_original: bool | None = None,
    ) -> bool: ...


SLACK_HOOKS = ("https", "hooks.slack.com", 443)
MAX_RETRY_AFTER = 5.0  # seconds we wait out a 429 on a response_url before giving up

_HOW: dict[str, dict[str, Any]] = {
    "ephemeral": {"response_type": "ephemeral", "replace_original": False},
    "in_channel": {"response_type": "in_channel", "replace_original": False},
    "replace": {"replace_original": True},
    "replace_in_channel": {"replace_original": True, "response_type": "in_channel"},
}


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without user-info; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def trusted_response_url(url: str, *, api_url: str | None = None) -> bool:
    """Slack's hooks host, or the origin of SLACK_API_URL; nothing else (no IPs, no user-info)."""
    where = origin(url)
    return where is not None and (where == SLACK_HOOKS or (api_url is not None and where == origin(api_url)))


async def send(respond: Respond, message: blocks.Message, **how: Any) -> bool:
    """Deliver one message (True when Slack took it); secrets are redacted on the way."""
    clean = json.loads(redact(json.dumps(message)))
    return await respond(text=clean["text"], blocks=clean["blocks"], **how)


async def deliver(respond: Respond, reply: Reply, *, first: bool = False) -> bool:
    """Send `reply` where it belongs (True when it reached Slack somewhere); `first`: no card to replace."""
    how = dict(_HOW[reply.placement])
    if first:
        how.pop("replace_original", None)
    posted = await send(respond, reply.message, **how)
    if reply.then is not None:
        shown = await send(respond, reply.then if posted else reply.message, replace_original=True)
        return posted or shown
    return posted


class Responder:
    """Replies for one process: one pooled aiohttp session for response_urls, the Web API otherwise.

    Bolt's `respond` opens a new HTTP session per message and follows redirects; this shares one
    session and never follows them.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        api_url: str | None = None,
        timeout: float = 10.0,
        outbox: Outbox | None = None,
    ) -> None:
        self._client = client
        self._outbox = outbox  # outcomes posted in a channel are retried, then kept (bot/slack/outbox.py)
        self._api_url = api_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def to(self, url: str, *, channel: str, user: str) -> Respond:
        """A `respond(text=, blocks=, response_type=, replace_original=)` for one request."""
        if trusted_response_url(url, api_url=self._api_url):

            async def respond(
                text: str = "",
                blocks: Sequence[dict[str, Any]] | None = None,
                *,
                response_type: str | None = None,
                replace_original: bool | None = None,
            ) -> bool:
                message = {
                    "text": text,
                    "blocks": blocks,
                    "response_type": response_type,
                    "replace_original": replace_original,
                }
                sent = await self._post_url(url, {k: v for k, v in message.items() if v is not None})
                return metrics.delivered("response_url", sent)

            return respond
        where = origin(url)
        log.warning(
            "response_url is not Slack's (%s); answering through the Web API instead",
            f"host {where[1]}" if where else "missing or unusable",
        )

        async def web_api(
            text: str = "",
            blocks: Sequence[dict[str, Any]] | None = None,
            *,
            response_type: str | None = None,
            replace_original: bool | None = None,
        ) -> bool:
            message = {"text": text, "blocks": blocks, "response_type": response_type}
            return metrics.delivered("web_api", await self._post_api(channel, user, message))

        return web_api

    async def post_in_channel(self, channel: str, message: blocks.Message) -> bool:
        """chat.postMessage: the last resort for an outcome whose response_url failed."""
        clean = json.loads(redact(json.dumps(message)))
        if self._outbox is not None:  # retried, then kept for later (bot/slack/outbox.py)
            return metrics.delivered("web_api", await self._outbox.deliver(channel, clean, what="outcome"))
        return metrics.delivered(
            "web_api", await self._post_api(channel, None, {**clean, "response_type": "in_channel"})
        )

    async def _post_url(self, url: str, payload: dict[str, Any]) -> bool:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        for _ in range(3):
            try:
                async with self._session.post(url, json=payload, allow_redirects=False) as response:
                    status, body = response.status, (await response.text())[:200]
                    retry_after = response.headers.get("Retry-After", "1")
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("response_url post failed: %s", type(exc).__name__)
                return False
            if status == 429 and retry_after.isdigit() and float(retry_after) <= MAX_RETRY_AFTER:
                await asyncio.sleep(float(retry_after))
                continue
            if status >= 300:
                log.warning("response_url answered %s: %s", status, body)
            return status < 300
        return False

    async def _post_api(self, channel: str, user: str | None, message: dict[str, Any]) -> bool:
        """In the channel when the message is for everyone, else ephemeral to `user`."""
        text, shown = message.get("text", ""), message.get("blocks")
        try:
            if message.get("response_type") == "in_channel" or user is None:
                await self._client.chat_postMessage(channel=channel, text=text, blocks=shown)
            else:
                await self._client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=shown)
        except Exception as exc:  # whatever Slack answered (an HTML 500 too): a reason, never a crash
            log.warning("Web API post failed: %s", refusal(exc).why)
            return False
        return True

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
