"""Slack's side of scheduled removals: the `seat_unschedule` button and posting announcements."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import metrics
from bot.app.schedule import Announce, Announcement, Schedules
from bot.domain.schedule_outcomes import Fired, ScheduleConfirmed, Unscheduled
from bot.logs import request_scope
from bot.slack import replies, schedule_blocks
from bot.slack.clicks import oops, read_click
from bot.slack.delivery import Responder, deliver, send
from bot.slack.outbox import Outbox

log = logging.getLogger("seatbot.schedule")


def slack_announcer(outbox: Outbox, *, audit_channel: str | None = None) -> Announce:
    """Post a scheduled removal's news in its channel (and SEATBOT_AUDIT_CHANNEL): each post retried,
    and kept for later if Slack still refuses it (bot/slack/outbox.py), one target never stopping the next."""

    async def announce(channel: str, what: Announcement) -> None:
        if isinstance(what, Fired):
            message = schedule_blocks.fired(what)
        elif isinstance(what, Unscheduled):
            message = schedule_blocks.unscheduled(what)
        elif isinstance(what, ScheduleConfirmed):
            message = schedule_blocks.schedule_confirmed(what)
        targets = [channel] + ([audit_channel] if audit_channel and audit_channel != channel else [])
        for index, where in enumerate(targets):
            body = message
            if index and isinstance(what, Fired) and what.failure is not None:  # no live buttons there
                body = {**message, "blocks": [b for b in message["blocks"] if b.get("type") != "actions"]}
            try:
                await outbox.deliver(where, body, what="scheduled removal's news")
            except Exception:  # a bug here must not keep the news from the audit channel
                log.exception("could not post the scheduled removal's news in %s", where)

    return announce


def register_schedule_listeners(app: AsyncApp, *, schedules: Schedules, responder: Responder) -> None:
    """`seat_unschedule`: an admin's cancel button on `/seat scheduled`."""

    @app.action("seat_unschedule")
    async def seat_unschedule(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        click = read_click(body)
        respond = responder.to(click.response_url, channel=click.channel, user=click.user)
        with request_scope() as rid:
            try:
                reply = await schedules.unschedule(click.value, user=click.user)
                metrics.click("unschedule", reply)
                await deliver(respond, replies.for_click(reply))
            except Exception:
                log.exception("unschedule failed")
                metrics.click("unschedule", "error")
                await send(respond, oops(rid), response_type="ephemeral", replace_original=False)
