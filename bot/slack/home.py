"""The App Home tab as Block Kit: a pure function from `HomeOverview` to a `views.publish` view.

A Home view holds at most 100 blocks and the same 3000-character texts as messages; the overview shows
counts rather than lists, so it stays the same size at 10 users and at 100,000.
"""

from __future__ import annotations

from typing import Any

from bot.app.home import HomeOverview, ScheduledItem
from bot.slack.blocks import event_line
from bot.slack.idle_blocks import source_line
from bot.slack.kit import clip, context, esc, header, line_sections, section, when, who
from bot.state.outbox import Undelivered as Kept

MAX_VIEW_BLOCKS = 100
MAX_SCHEDULED = 15

View = dict[str, Any]

ABOUT = (
    "Seat Bot takes a person's Cloudflare Zero Trust seat away from Slack, with a confirmation step: "
    "`/seat revoke &lt;email|@person|seat-uid&gt;` shows the seat's state, one click by an admin removes it, "
    "and every step is recorded. `/seat idle` lists seats nobody has used for weeks and frees them in "
    "one reviewed click."
)


def _admins(o: HomeOverview) -> str:
    people = [who(a) for a in o.admins]
    groups = [f"<!subteam^{esc(g)}>" for g in o.admin_groups if g.isalnum()]
    listed = ", ".join([*people, *groups]) or "_nobody yet (SEATBOT_ADMINS is not set)_"
    return f"*Admins:* {listed}"


def _scheduled_block(item: ScheduledItem) -> dict[str, Any]:
    reason = f" · reason: {esc(item.reason)}" if item.reason else ""
    block = section(f"*{esc(item.targets)}* at {when(item.at)} · by {who(item.by)}{reason}")
    block["accessory"] = {
        "type": "button",
        "action_id": "home_unschedule",
        "text": {"type": "plain_text", "text": "Cancel"},
        "value": item.id,
        "confirm": {
            "title": {"type": "plain_text", "text": "Cancel this removal?"},
            "text": {"type": "plain_text", "text": "The seat will not be removed at the scheduled time."},
            "confirm": {"type": "plain_text", "text": "Cancel it"},
            "deny": {"type": "plain_text", "text": "Keep it"},
        },
    }
    return block


def _undelivered_line(item: Kept) -> str:
    """One message Slack refused: where it was going, what it said, and Slack's last answer."""
    text = esc(clip(item.text.replace("\n", " "), 120))
    tries = f"{item.tries} tr{'y' if item.tries == 1 else 'ies'}"
    return (
        f":warning: {esc(item.what)} for <#{esc(item.channel)}>, kept {when(item.kept_at)} "
        f"({tries}, Slack: {esc(item.why)}): _{text}_"
    )


def home_view(o: HomeOverview) -> View:
    blocks: list[dict[str, Any]] = [header("Seat Bot"), section(ABOUT), context(_admins(o))]
    if not o.is_admin:
        blocks.append(context("Only admins see the seat overview here. Ask one of them for help."))
        return _view(blocks)
    blocks.append({"type": "divider"})
    blocks.append(header("Seats"))
    if o.counts is not None:
        c = o.counts
        blocks.append(
            section(
                f"*{c.in_use:,}* seats in use of *{c.users:,}* users in the account\n"
                f"*{c.idle:,}* idle seats (no sign-in for {c.days}+ days)"
                + (f" · {c.excluded:,} more excluded" if c.excluded else "")
                + " · `/seat idle` to review and free them"
            )
        )
        blocks.append(context(source_line(c.source, o.now)))
    else:
        blocks.append(section(f":warning: {esc(o.counts_error or 'Seat counts are unavailable.')}"))
    if o.undelivered:
        blocks.append(header("Not delivered to Slack yet"))
        blocks += line_sections([_undelivered_line(item) for item in o.undelivered], max_sections=5)
    blocks.append(header("Scheduled removals"))
    if o.scheduled is None:
        blocks.append(context("Scheduled removals are not available in this deployment."))
    elif not o.scheduled:
        blocks.append(context("None scheduled."))
    else:
        blocks += [_scheduled_block(item) for item in o.scheduled[:MAX_SCHEDULED]]
        if len(o.scheduled) > MAX_SCHEDULED:
            blocks.append(context("…and more: `/seat scheduled` lists them all."))
    blocks.append(header("Recent activity"))
    if o.events_error:
        blocks.append(context(esc(o.events_error)))
    elif not o.events:
        blocks.append(context("No audit events yet."))
    else:
        seats_by_id = {
            str(e["id"]): e["seats"] for e in o.events if e.get("id") and isinstance(e.get("seats"), list)
        }
        blocks += line_sections([event_line(e, seats_by_id) for e in o.events], max_sections=10)
    return _view(blocks)


def _view(blocks: list[dict[str, Any]]) -> View:
    assert len(blocks) <= MAX_VIEW_BLOCKS
    return {"type": "home", "blocks": blocks}
