"""The periodic idle report's button: the clicker gets a `/seat idle` card of their own."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import metrics
from bot.app.flow import SeatFlow
from bot.logs import request_scope
from bot.slack import replies
from bot.slack.clicks import oops
from bot.slack.delivery import Responder, deliver, send

log = logging.getLogger("seatbot.listeners")


def register_idle_actions(app: AsyncApp, *, flow: SeatFlow, responder: Responder) -> None:
    @app.action("idle_review")
    async def idle_review(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        channel = str((body.get("channel") or {}).get("id", ""))
        days = str(((body.get("actions") or [{}])[0]).get("value", ""))[:4]
        respond = responder.to(str(body.get("response_url", "")), channel=channel, user=user)
        with request_scope() as rid:
            try:
                # exactly `/seat idle <days>` typed by the clicker: the same checks, a card of their own
                reply = await flow.command(user=user, channel=channel, text=f"idle {days}".strip())
                metrics.click("idle_review", reply)
                answer = dataclasses.replace(replies.for_command(reply), upload=None)  # the report has it
                await deliver(respond, answer, first=True)
            except Exception:
                log.exception("idle review failed")
                metrics.click("idle_review", "error")
                await send(respond, oops(rid), response_type="ephemeral", replace_original=False)
