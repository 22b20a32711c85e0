"""Block Kit building blocks: escaping, mentions, dates and blocks that stay inside Slack's limits.

Pure functions shared by every renderer (`blocks`, `schedule_blocks`, `idle_blocks`, `home`,
`workflow_step`): at most 50 blocks a message, 3000 characters a text object, long line lists
packed into few sections and summarised.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

Message = dict[str, Any]
MAX_BLOCKS = 50
MAX_TEXT = 3000
SECTION_BUDGET = 2900
MAX_LINE_SECTIONS = 40
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def esc(text: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def who(user_id: str) -> str:
    """A live mention for a Slack user ID the bot got from Slack itself; anything else is escaped."""
    return f"<@{user_id}>" if USER_ID.match(user_id) else esc(user_id)


def when(ts: float) -> str:
    fallback = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{{date_short_pretty}} at {{time}}|{fallback}>"


def flags(access: bool | None, gateway: bool | None) -> str:
    def one(name: str, value: bool | None) -> str:
        return f"{name} {'?' if value is None else ('✓' if value else '✗')}"

    return f"{one('access', access)} / {one('gateway', gateway)}"


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_TEXT)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_TEXT)}]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150), "emoji": True}}


def line_sections(lines: list[str], *, max_sections: int = MAX_LINE_SECTIONS) -> list[dict[str, Any]]:
    """Pack lines into as few sections as fit; summarise what does not fit."""
    sections: list[str] = []
    current = ""
    for index, line in enumerate(lines):
        line = clip(line, 1000)
        if current and len(current) + 1 + len(line) > SECTION_BUDGET:
            if len(sections) + 1 >= max_sections:
                current += f"\n…and {len(lines) - index} more"
                break
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        sections.append(current)
    return [section(s) for s in sections]


def compose(text: str, blocks: list[dict[str, Any]], **extra: Any) -> Message:
    """A message: its notification text and its blocks (never more than Block Kit allows)."""
    assert len(blocks) <= MAX_BLOCKS
    return {"text": clip(text, MAX_TEXT), "blocks": blocks, **extra}
