"""Block Kit for scheduled removals: pure functions, escaped like everything in `blocks`."""

from __future__ import annotations

from typing import Any

from bot.schedule_outcomes import Fired, ScheduleConfirmed, ScheduleList, Unscheduled, stamp
from bot.slack.blocks import failure, seat_line
from bot.slack.kit import Message, compose, context, esc, header, line_sections, section, who
from bot.state.schedules import Entry

MAX_LISTED = 40  # one block each, inside Block Kit's 50


def _people(entry: Entry) -> str:
    return ", ".join(esc(t.email or t.seat_uid) for t in entry.targets)


def _meta(entry: Entry) -> str:
    p = entry.pending
    return (
        f"scheduled by {who(p.requester)} · confirmed by {who(entry.confirmer)} · "
        f"reason: {esc(p.reason) if p.reason else '_none given_'}"
    )


def _entry_block(entry: Entry, *, button: bool) -> dict[str, Any]:
    text = f"*{esc(stamp(entry.at, entry.pending.tz))}* — {_people(entry)}\n{_meta(entry)}"
    block: dict[str, Any] = section(text)
    if button:
        block["accessory"] = {
            "type": "button",
            "action_id": "seat_unschedule",
            "text": {"type": "plain_text", "text": "Cancel"},
            "value": entry.id,
            "confirm": {
                "title": {"type": "plain_text", "text": "Cancel this scheduled removal?"},
                "text": {
                    "type": "plain_text",
                    "text": f"{len(entry.targets)} seat(s) will keep their access.",
                },
                "confirm": {"type": "plain_text", "text": "Cancel it"},
                "deny": {"type": "plain_text", "text": "Back"},
            },
        }
    return block


def schedule_list(r: ScheduleList) -> Message:
    if r.duplicate:
        title = "Already scheduled: these seats have a pending removal"
        head = "Nothing new was scheduled. Cancel the existing one first to change it."
    elif not r.entries:
        return compose("No scheduled removals.", [section("No scheduled removals.")])
    else:
        title = f"Scheduled removals ({r.total})"
        head = "Soonest first."
    shown = r.entries[:MAX_LISTED]
    blocks = [header(title), context(head), *(_entry_block(e, button=True) for e in shown)]
    if r.total > len(shown):
        blocks.append(context(f"…and {r.total - len(shown)} more"))
    return compose(title, blocks)


def schedule_confirmed(c: ScheduleConfirmed) -> Message:
    e = c.entry
    when = "now (its time had passed)" if c.late else esc(stamp(e.at, e.pending.tz))
    text = f":alarm_clock: Removal of {len(e.targets)} seat(s) scheduled for {when}: {_people(e)}"
    blocks = [section(text), context(_meta(e))]
    if not c.audit_ok:
        blocks.append(context(":warning: audit trail write failed (see the bot's logs)"))
    return compose(f"Removal scheduled for {when}", blocks, response_type="in_channel")


def unscheduled(u: Unscheduled) -> Message:
    e = u.entry
    text = (
        f":no_entry_sign: Scheduled removal cancelled by {who(u.by)}: {_people(e)} "
        f"(was due {esc(stamp(e.at, e.pending.tz))}). Nothing was changed."
    )
    blocks = [section(text), context(_meta(e))]
    if not u.audit_ok:
        blocks.append(context(":warning: audit trail write failed (see the bot's logs)"))
    return compose("Cancelled scheduled removal", blocks)


def fired(f: Fired) -> Message:
    e = f.entry
    done = sum(r.confirmed for r in f.results)
    if f.failure is not None:
        title = f"Scheduled removal failed after {f.attempts} attempt(s)"
    elif all(r.confirmed for r in f.results):
        title = f"Scheduled removal done: {done} seat(s) revoked"
    else:
        title = f"Scheduled removal partly confirmed: {done} of {len(f.results)} seats"
    lines = [seat_line(r.target, r.seat) for r in f.results]
    lines += [
        f"• :heavy_minus_sign: *{esc(t.email or t.seat_uid)}* — already removed before the time; not re-sent"
        for t in f.gone
    ]
    blocks = [header(title), *line_sections(lines, max_sections=8)]
    trailer = f"due {esc(stamp(e.at, e.pending.tz))} · {_meta(e)}"
    if not f.audit_ok:
        trailer += " · :warning: audit trail write failed (see the bot's logs)"
    blocks.append(context(trailer))
    if f.failure is not None:  # the try-again card (its buttons run the rest now, after a click)
        card = failure(f.failure)["blocks"]
        room = 50 - len(blocks)
        blocks += card if len(card) <= room else [*card[: room - 1], card[-1]]  # keep the buttons
    return compose(title, blocks)
