"""CSV files into a conversation through slack_sdk's files upload v2 (needs the `files:write` scope)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.idle import IdleReport, SweepOutcome
from bot.slack import replies
from bot.slack.replies import Upload

log = logging.getLogger("seatbot.files")

_WHY = {
    "not_in_channel": "the bot is not in this channel: invite it with `/invite @seatbot`",
    "channel_not_found": "the bot cannot see this channel: invite it with `/invite @seatbot`",
    "missing_scope": "the Slack app lacks the `files:write` scope: reinstall it from manifest.yml",
}


async def upload(client: AsyncWebClient, file: Upload) -> str | None:
    """Upload `file`; None when Slack took it, else a sentence for the person who asked."""
    try:
        await client.files_upload_v2(
            channel=file.channel, filename=file.filename, title=file.title, content=file.content
        )
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        log.warning("CSV upload failed: %s", error)
        return f"The CSV file could not be uploaded: {_WHY.get(error, error)}."
    except (SlackRequestError, OSError) as exc:
        log.warning("CSV upload failed: %s", type(exc).__name__)
        return "The CSV file could not be uploaded (Slack's upload failed); try again later."
    return None


Post = Callable[[str, dict[str, Any]], Awaitable[bool]]
Publish = Callable[[str, replies.Reply], Awaitable[None]]


def publisher(client: AsyncWebClient, post: Post) -> Publish:
    """Posts a reply into a channel without a response_url (job runner work), with its CSV."""

    async def publish(channel: str, reply: replies.Reply) -> None:
        if not await post(channel, reply.message):
            log.error("could not post %r in %s", reply.message.get("text", "")[:80], channel)
        if reply.upload is not None:
            problem = await upload(client, dataclasses.replace(reply.upload, channel=channel))
            if problem is not None:
                log.error("%s (channel %s)", problem, channel)

    return publish


def announcer(publish: Publish) -> Callable[[SweepOutcome], Awaitable[None]]:
    """A sweep that finished on the job runner (no response_url by then) reports in its channel."""

    async def announce(outcome: SweepOutcome) -> None:
        await publish(outcome.pending.channel, replies.for_click(outcome))

    return announce


def report_poster(publish: Publish) -> Callable[[IdleReport], Awaitable[None]]:
    """The periodic idle report, into SEATBOT_IDLE_REPORT_CHANNEL."""

    async def post(report: IdleReport) -> None:
        await publish(report.channel, replies.for_command(report))

    return post
