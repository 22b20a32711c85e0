"""A button click as the listeners need it: the button's value, who clicked, where, and the oops answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.domain.outcomes import Notice
from bot.slack import blocks

OOPS = "Something went wrong on the bot's side. Request id: {rid}"


@dataclass(frozen=True)
class Click:
    value: str  # the button's value, at most 64 characters
    user: str
    channel: str  # the message's channel, else the container's
    response_url: str


def read_click(body: dict[str, Any]) -> Click:
    """The fields of a `block_actions` payload every click listener reads (missing ones are empty)."""
    actions = body.get("actions") or [{}]
    channel = (body.get("channel") or {}).get("id", "") or (body.get("container") or {}).get("channel_id", "")
    return Click(
        value=str(actions[0].get("value", ""))[:64],
        user=str((body.get("user") or {}).get("id", "")),
        channel=str(channel),
        response_url=str(body.get("response_url", "")),
    )


def oops(rid: str) -> blocks.Message:
    """The ephemeral answer when a listener failed: the request id to look for in the logs."""
    return blocks.notice(Notice(OOPS.format(rid=rid), kind="error"))
