"""POST /slack/events, checked before Bolt sees it: size, signature, then shape.

Order matters. The body is read with a byte counter (413 past the bound, without reading the rest)
and a deadline; the signature is checked on those raw bytes (401); only a signed body is parsed,
by Slack's documented shapes (400 when it has none of them). Bolt then gets the parsed body as JSON,
because its own form parser treats any body containing the text "payload" as an interaction and
drops slash commands that merely mention the word (a channel `payload-oncall`, an email
`payload.eng@…`). Request bodies are never logged.

Memory before the signature check is bounded twice: each body by `max_body_bytes`, and all bodies not
yet checked together by `unverified_bytes` (an `UnverifiedBytes` per process, charged as bytes
arrive): past it a request gets 503 at once and its connection closes, so a crowd of clients
sending large unsigned bodies holds at most that much, whatever their number.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from bot import metrics
from bot.slack.shapes import Malformed, check_interaction, check_json_body, load_object

log = logging.getLogger("seatbot.edge")
# Set while Bolt handles a request: its ack's "sent" event and the edge (for its other acks in flight).
_ticket: contextvars.ContextVar[tuple[asyncio.Event, SlackEdge] | None] = contextvars.ContextVar(
    "ack_ticket", default=None
)

# Slack signs `v0:<timestamp>:<body>` and rejects requests older than five minutes; so do we.
MAX_SKEW_SECONDS = 300
# ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other scripts' digits
_DIGITS = re.compile(r"[0-9]{1,12}")


class Rejected(Exception):
    """A request answered before Bolt: HTTP status and a short reason (never the body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class EdgeLimits:
    max_body_bytes: int = 524_288
    read_timeout: float = 10.0
    unverified_bytes: int = 33_554_432


class UnverifiedBytes:
    """Bytes of request bodies received and not yet signature-checked, in this process, together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


async def read_body(request: Request, limits: EdgeLimits, budget: UnverifiedBytes) -> bytearray:
    """The whole body, or Rejected: 413 as soon as it passes the bound, 408 when slow, 503 when the
    bodies not yet checked would hold more than their bound. The caller gives back `len(body)`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared):
            raise Rejected(400, "bad content-length")
        if int(declared) > limits.max_body_bytes:
            raise Rejected(413, "body over the bound (declared)")
    body = bytearray()  # one buffer: no list of chunks joined into a second copy
    read = False
    try:
        async with asyncio.timeout(limits.read_timeout):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limits.max_body_bytes:
                    raise Rejected(413, "body over the bound")
                if not budget.take(len(chunk)):
                    raise Rejected(503, "too many unverified request bodies in flight")
                body += chunk
        read = True
    except TimeoutError:
        raise Rejected(408, "body not received in time") from None
    except ClientDisconnect:
        raise Rejected(400, "client went away") from None
    finally:
        if not read:
            budget.give(len(body))
    return body


def signature_ok(
    secret: bytes, body: bytes | bytearray, timestamp: str | None, signature: str | None, *, now: float
) -> bool:
    """Slack's v0 signature over the raw bytes (no decoding first: any byte string can be checked)."""
    if not timestamp or not signature or not _DIGITS.fullmatch(timestamp):
        return False
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def parse_signed(body: bytes | bytearray, content_type: str) -> dict[str, Any]:
    """A signed body → the dict Bolt expects, by Slack's documented shapes; Rejected(400) otherwise."""
    try:
        return _parse_signed(body, content_type)
    except Malformed as exc:
        raise Rejected(400, str(exc)) from None


def _parse_signed(body: bytes | bytearray, content_type: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    if content_type.split(";")[0].strip().lower() == "application/json":
        value = load_object(text, "JSON body")  # Events API shapes (url_verification, …)
        check_json_body(value)
        return value
    try:
        form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except ValueError:
        raise Rejected(400, "body is not a form") from None
    if "command" in form:  # a slash command: its fields are plain form fields, whatever their values
        _require_strings(form, "command", "user_id", "channel_id")  # no response_url: Web API replies
        return form
    if "payload" in form:  # an interaction: one `payload` field holding JSON
        payload = load_object(form["payload"], "payload")
        check_interaction(payload)
        return payload
    if form.get("ssl_check") == "1":
        return form
    raise Rejected(400, "not a slash command or an interaction")


def _require_strings(form: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if not isinstance(form.get(n), str) or not form[n]]
    if missing:
        raise Rejected(400, f"missing {', '.join(missing)}")


def rejection(status: int, reason: str) -> Response:
    # `connection: close` so an unread body is not drained or parsed as a next request
    return JSONResponse({"error": reason}, status_code=status, headers={"connection": "close"})


class SlackEdge:
    """The endpoint: bounded read → signature → shape → Bolt (which only routes and acks)."""

    def __init__(
        self,
        bolt: AsyncApp,
        *,
        signing_secret: str,
        limits: EdgeLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bolt = bolt
        self._acking = 0  # requests received whose response is not on the wire yet
        self._quiet = asyncio.Event()
        self._secret = signing_secret.encode()
        self._limits = limits
        self._clock = clock
        self.unverified = UnverifiedBytes(limits.unverified_bytes)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        self._acking += 1
        self._quiet.clear()
        try:
            response = await self._handle(request)
        except BaseException:
            self._acked()
            raise
        then = response.background

        async def on_the_wire() -> None:  # async: Starlette runs sync background tasks in threads
            metrics.slack_ack(response.status_code, time.perf_counter() - started)
            self._acked()
            if then is not None:
                await then()

        response.background = BackgroundTask(on_the_wire)
        return response

    def _acked(self) -> None:
        """A response is on the wire: when no other ack is pending, deferred work may run."""
        self._acking -= 1
        if self._acking == 0:
            self._quiet.set()

    async def quiet(self, *, at_most: float) -> None:
        """Until no request of this edge awaits its ack (or `at_most` seconds)."""
        if self._acking:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), at_most)

    async def _handle(self, request: Request) -> Response:
        client = request.client.host if request.client else "-"
        try:
            body = await read_body(request, self._limits, self.unverified)
            headers = request.headers
            try:
                signed = signature_ok(
                    self._secret,
                    body,
                    headers.get("x-slack-request-timestamp"),
                    headers.get("x-slack-signature"),
                    now=self._clock(),
                )
            finally:
                self.unverified.give(len(body))
            if not signed:
                raise Rejected(401, "invalid signature")
            parsed = parse_signed(body, headers.get("content-type", ""))
        except Rejected as exc:
            # one JSON line per request; the 503s of a flood are rate-limited (bot/slack/server.py)
            line = "unverified bodies at their bound: %s" if exc.status == 503 else "rejected a request: %s"
            log.warning(line, exc.reason, extra={"status": exc.status, "client": client})
            return rejection(exc.status, exc.reason)
        forwarded: dict[str, str | Sequence[str]] = {
            k: v for k, v in request.headers.items() if k.startswith("x-slack-") or k == "user-agent"
        }
        forwarded["content-type"] = "application/json"
        bolt_request = AsyncBoltRequest(body=json.dumps(parsed), headers=forwarded)
        sent = asyncio.Event()
        token = _ticket.set((sent, self))  # the listener task Bolt starts inherits it
        try:
            answer = await self._bolt.async_dispatch(bolt_request)
        except BaseException:
            sent.set()
            raise
        finally:
            _ticket.reset(token)
        return Response(
            status_code=answer.status,
            content=answer.body,
            headers=answer.first_headers_without_set_cookie(),
            background=BackgroundTask(_set, sent),
        )


async def _set(event: asyncio.Event) -> None:
    event.set()


async def after_ack(*, at_most: float = 0.5) -> None:
    """Work after an ack waits until that ack is on the wire, so it never delays it."""
    ticket = _ticket.get()
    if ticket is not None:  # None in Socket Mode: Slack's socket carries the ack
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket[0].wait(), at_most)


async def acks_first(*, at_most: float = 1.0) -> None:
    """Heavy work (Cloudflare-bound) waits, within `at_most` seconds, until no other request of
    this process awaits its ack: in a burst the acks go first and the work follows."""
    ticket = _ticket.get()
    if ticket is not None:
        await ticket[1].quiet(at_most=at_most)
