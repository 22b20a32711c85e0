"""CSV files into a conversation through slack_sdk's files upload v2 (needs the `files:write` scope)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.idle import SweepOutcome
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


def announcer(client: AsyncWebClient, post: Post) -> Callable[[SweepOutcome], Awaitable[None]]:
    """Posts a sweep's outcome that finished on the job runner (no response_url then) with its CSV."""

    async def announce(outcome: SweepOutcome) -> None:
        reply = replies.for_click(outcome)
        if not await post(outcome.pending.channel, reply.message):
            log.error("could not post a continued sweep's outcome in %s", outcome.pending.channel)
        if reply.upload is not None:
            problem = await upload(client, reply.upload)
            if problem is not None:
                log.error("continued sweep: %s", problem)

    return announce
