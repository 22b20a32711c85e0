"""Thin Bolt listeners: ack first, then hand over to the flow and deliver its answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.app.flow import SeatFlow
from bot.domain.idle import SweepOutcome
from bot.domain.outcomes import Failure, Notice, Outcome
from bot.logs import request_scope
from bot.slack import blocks, files, replies
from bot.slack.clicks import read_click
from bot.slack.delivery import Respond, Responder, deliver, send
from bot.slack.edge import acks_first, after_ack
from bot.slack.lanes import DeadlineExceeded, Lane
from bot.slack.outbox import Outbox, refusal

log = logging.getLogger("seatbot.listeners")
OOPS = "Something went wrong on the bot's side; nothing was reported done. Request id: {rid}"
DEADLINE = (
    "Cloudflare did not answer in time: this command was stopped after {s:g} seconds and nothing "
    "was changed. Try again in a minute."
)


def build_bolt_app(
    *,
    flow: SeatFlow,
    client: AsyncWebClient,
    signing_secret: str | None,
    responder: Responder,
    audit_channel: str | None = None,
    outbox: Outbox | None = None,
    lane: Lane | None = None,
) -> AsyncApp:
    """Bolt app; `signing_secret=None` when requests were verified before (edge) or by Slack's socket."""
    # Cloudflare-bound commands wait their turn (so a burst cannot starve the next acks) within a
    # deadline; everything else runs at once.
    lane = lane or Lane(places=4, deadline=30.0)
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
    )

    async def to_audit_channel(message: blocks.Message) -> None:
        if not audit_channel:
            return
        if outbox is not None:  # retried, then kept for later: never only a log line
            metrics.delivered(
                "audit_channel", await outbox.deliver(audit_channel, message, what="audit channel copy")
            )
            return
        try:
            await client.chat_postMessage(
                channel=audit_channel, text=message["text"], blocks=message["blocks"]
            )
        except Exception as exc:  # any answer, an HTML 500 too: one line, never a crash
            metrics.delivered("audit_channel", False)
            error = refusal(exc).why
            if error == "not_in_channel":
                log.error(
                    "cannot post to SEATBOT_AUDIT_CHANNEL %s: the bot is not in it; invite it with /invite",
                    audit_channel,
                )
            else:
                log.error("posting to SEATBOT_AUDIT_CHANNEL failed: %s", error)

    async def attach(respond: Respond, reply: replies.Reply) -> None:
        """The reply's CSV into the conversation; if Slack refuses it, tell the person why."""
        if reply.upload is None:
            return
        problem = await files.upload(client, reply.upload)
        if problem is not None:
            note = blocks.notice(Notice(problem, kind="error"))
            await send(respond, note, response_type="ephemeral", replace_original=False)

    @contextlib.asynccontextmanager
    async def cloudflare_bound() -> AsyncIterator[None]:
        async with lane.enter():
            await acks_first()  # each place yields to the acks of a burst (bounded), one at a time
            yield

    @app.command("/seat")
    async def seat_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()  # before anything slow: Slack gives up after 3 seconds
        await after_ack()  # the work starts once the ack is on the wire, never ahead of it
        user, channel = str(body.get("user_id", "")), str(body.get("channel_id", ""))
        respond = responder.to(str(body.get("response_url", "")), channel=channel, user=user)
        with request_scope() as rid:
            try:
                reply = await flow.command(
                    user=user, channel=channel, text=str(body.get("text", "")), lane=cloudflare_bound
                )
                metrics.command(body.get("text", ""), reply)
                answer = replies.for_command(reply)
                await deliver(respond, answer, first=True)
                await attach(respond, answer)
            except DeadlineExceeded as exc:
                log.warning("command stopped at its deadline (%s)", exc)
                metrics.command(body.get("text", ""), "deadline")
                await send(respond, blocks.notice(Notice(DEADLINE.format(s=exc.seconds), kind="unavailable")))
            except Exception:
                log.exception("command failed")
                metrics.command(body.get("text", ""), "error")
                await send(respond, blocks.notice(Notice(OOPS.format(rid=rid), kind="error")))

    async def on_click(action_name: Literal["confirm", "cancel"], body: dict[str, Any]) -> None:
        click = read_click(body)
        pending_id, user = click.value, click.user
        respond = responder.to(click.response_url, channel=click.channel, user=user)
        shown: list[asyncio.Task[bool]] = []
        with request_scope() as rid:
            try:

                async def progress(status: Any) -> None:
                    # a courtesy: sent alongside the PATCH, never before it
                    note = send(respond, replies.for_progress(status), replace_original=True)
                    shown.append(asyncio.create_task(note))

                reply = await flow.click(
                    action=action_name, pending_id=pending_id, user=user, progress=progress
                )
                metrics.click(action_name, reply)
                if shown:  # the result replaces the progress note, so it must land after it
                    await asyncio.gather(*shown, return_exceptions=True)
                outcome = replies.for_click(reply)
            except Exception:
                log.exception("click failed")
                metrics.click(action_name, "error")
                await send(
                    respond,
                    blocks.notice(Notice(OOPS.format(rid=rid), kind="error")),
                    response_type="ephemeral",
                    replace_original=False,
                )
                return
            # Each place the outcome goes is tried on its own, at the same time: Slack failing one (and
            # its retries) never keeps the outcome from the other.
            await asyncio.gather(to_the_card(respond, reply, outcome), to_the_audit(reply))

    async def to_the_card(respond: Respond, reply: Any, outcome: replies.Reply) -> None:
        try:
            posted = await deliver(respond, outcome)
            if not posted and isinstance(reply, Outcome | Failure | SweepOutcome):
                log.warning(
                    "the outcome could not be delivered through response_url; "
                    "posting it with chat.postMessage in the card's channel"
                )
                await responder.post_in_channel(reply.pending.channel, outcome.message)
            await attach(respond, outcome)
        except Exception:
            log.exception("delivering the outcome failed")

    async def to_the_audit(reply: Any) -> None:
        try:
            copy = replies.for_audit_channel(reply)
            if copy is not None:
                await to_audit_channel(copy)
        except Exception:
            log.exception("the audit channel's copy failed")

    @app.action("seat_confirm")
    async def seat_confirm(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await on_click("confirm", body)

    @app.action("seat_cancel")
    async def seat_cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await on_click("cancel", body)

    return app
