"""Block Kit for scheduled removals: pure functions, escaped like everything in `blocks`."""

from __future__ import annotations

from typing import Any

from bot.domain.models import AccessUser
from bot.domain.outcomes import Card
from bot.domain.schedule_outcomes import (
    LATE_AFTER,
    Fired,
    ScheduleConfirmed,
    ScheduleList,
    Unscheduled,
    stamp,
)
from bot.slack.blocks import card, failure, seat_line
from bot.slack.kit import Message, compose, context, esc, flags, header, line_sections, section, who
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
        lost = [context(f":rotating_light: {esc(r.lost_since)}")] if r.lost_since else []
        return compose("No scheduled removals.", [section("No scheduled removals."), *lost])
    else:
        title = f"Scheduled removals ({r.total})"
        head = "Soonest first."
    shown = r.entries[:MAX_LISTED]
    blocks = [header(title), context(head), *(_entry_block(e, button=True) for e in shown)]
    if r.lost_since and not r.duplicate:
        blocks.append(context(f":rotating_light: {esc(r.lost_since)}"))
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


def _late(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else (f"{minutes} min {secs} s" if minutes else f"{secs} s")


def _seats(users: tuple[AccessUser, ...]) -> str:
    return ", ".join(f"`{esc(u.seat_uid or '?')}` ({flags(u.access_seat, u.gateway_seat)})" for u in users)


def fired(f: Fired) -> Message:
    e = f.entry
    tz = e.pending.tz
    done = sum(r.confirmed for r in f.results) + sum(r.confirmed for r in f.earlier)
    sent = len(f.results) + len(f.earlier)
    if f.failure is not None:
        title = f"Scheduled removal failed after {f.attempts} attempt(s)"
    elif f.moved:
        title = (
            f"Scheduled removal: {done} seat(s) revoked; "
            f"{len(f.moved)} person(s) hold a new seat, not removed"
        )
    elif done == sent and (sent or f.gone):
        title = f"Scheduled removal done: {done} seat(s) revoked"
    elif done == sent:
        title = "Scheduled removal: nothing to remove, the seat no longer exists"
    else:
        title = f"Scheduled removal partly confirmed: {done} of {sent} seats"
    lines = [seat_line(r.target, r.seat) for r in f.results]
    when_sent = esc(stamp(f.sent_at, tz)) if f.sent_at is not None else "the due time"
    lines += [
        seat_line(r.target, r.seat) + f" — removed by the firing at {when_sent} (the bot stopped before "
        f"recording it); confirmed now, {esc(stamp(f.fired_at, tz))}"
        for r in f.earlier
    ]
    lines += [
        f"• :heavy_minus_sign: *{esc(t.email or t.seat_uid)}* — already removed before the time; not re-sent"
        for t in f.gone
    ]
    lines += [
        f"• :warning: *{esc(m.target.email or m.target.seat_uid)}* — the scheduled seat "
        f"`{esc(m.target.seat_uid)}` is no longer theirs: Cloudflare lists them with seat "
        f"{_seats(m.now)} now. *Not removed*: this "
        "schedule was confirmed for the old seat only"
        + ("; confirm the card below to remove the new one." if f.offer is not None else ".")
        for m in f.moved
    ]
    lines += [
        f"• :heavy_minus_sign: *{esc(t.email or t.seat_uid)}* — no Zero Trust user holds seat "
        f"`{esc(t.seat_uid)}` any more and none has this email (the user was deleted); nothing to remove"
        for t in f.vanished
    ]
    blocks = [header(title), *line_sections(lines, max_sections=8)]
    trailer = f"due {esc(stamp(e.at, tz))} · {_meta(e)}"
    if f.late_by > LATE_AFTER:
        trailer = f":hourglass: ran {_late(f.late_by)} late, at {esc(stamp(f.fired_at, tz))} · " + trailer
    if not f.audit_ok:
        trailer += " · :warning: audit trail write failed (see the bot's logs)"
    blocks.append(context(trailer))
    for extra in (
        failure(f.failure)["blocks"] if f.failure is not None else [],
        card(Card(f.offer, audit_ok=f.audit_ok))["blocks"] if f.offer is not None else [],
    ):  # the try-again and new-seat cards (their buttons act now, after an admin's click)
        room = 50 - len(blocks)
        blocks += extra if len(extra) <= room else [*extra[: room - 1], extra[-1]]  # keep the buttons
    return compose(title, blocks)
