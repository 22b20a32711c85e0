"""Block Kit rendering: pure functions from the flow's answers to Slack message payloads.

Every user- or API-supplied string goes through `esc`; only mentions of user IDs that the bot
itself produced (`<@U…>`) are left live. Messages stay inside Block Kit's limits: at most 50
blocks, 3000 characters per text object; long target lists are summarised.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bot.models import AccessUser, Pending, PendingTarget, Seat
from bot.outcomes import (
    AuditReport,
    Cancelled,
    Card,
    Failure,
    Notice,
    Outcome,
    StatusReport,
)
from bot.parse import USAGE
from bot.schedule_outcomes import stamp

Message = dict[str, Any]
MAX_BLOCKS = 50
MAX_TEXT = 3000
_SECTION_BUDGET = 2900
_MAX_LINE_SECTIONS = 40
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_ICON = {
    "info": ":information_source:",
    "error": ":warning:",
    "refused": ":no_entry:",
    "unavailable": ":hourglass:",
    "expired": ":hourglass:",
}


def esc(text: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def who(user_id: str) -> str:
    """A live mention for a Slack user ID the bot got from Slack itself; anything else is escaped."""
    return f"<@{user_id}>" if _USER_ID.match(user_id) else esc(user_id)


def when(ts: float) -> str:
    fallback = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{{date_short_pretty}} at {{time}}|{fallback}>"


def flags(access: bool | None, gateway: bool | None) -> str:
    def one(name: str, value: bool | None) -> str:
        return f"{name} {'?' if value is None else ('✓' if value else '✗')}"

    return f"{one('access', access)} / {one('gateway', gateway)}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, MAX_TEXT)}]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, 150), "emoji": True}}


def _lines(lines: list[str], *, max_sections: int = _MAX_LINE_SECTIONS) -> list[dict[str, Any]]:
    """Pack lines into as few sections as fit; summarise what does not fit."""
    sections: list[str] = []
    current = ""
    for index, line in enumerate(lines):
        line = _clip(line, 1000)
        if current and len(current) + 1 + len(line) > _SECTION_BUDGET:
            if len(sections) + 1 >= max_sections:
                current += f"\n…and {len(lines) - index} more"
                break
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        sections.append(current)
    return [_section(s) for s in sections]


def _message(text: str, blocks: list[dict[str, Any]], **extra: Any) -> Message:
    assert len(blocks) <= MAX_BLOCKS
    return {"text": _clip(text, MAX_TEXT), "blocks": blocks, **extra}


def _target_line(t: PendingTarget) -> str:
    name = f" ({esc(t.name)})" if t.name else ""
    person = esc(t.email) if t.email else ("seat " + esc(t.seat_uid))
    if t.label.startswith("<@") and t.label.endswith(">") and _USER_ID.fullmatch(t.label[2:-1]):
        person = f"{t.label} {person}"
    return f"• *{person}*{name} — seat `{esc(t.seat_uid)}` — now {flags(t.access_seat, t.gateway_seat)}"


def notice(n: Notice) -> Message:
    text = esc(n.text)
    blocks = [_section(f"{_ICON.get(n.kind, '')} {text}".strip())]
    if n.usage and n.kind != "info":
        blocks.append(_context(esc(USAGE)))
    return _message(text, blocks)


def card(c: Card) -> Message:
    p = c.pending
    count = len(p.targets)
    noun = "seat" if count == 1 else "seats"
    title = f"Revoke {count} Zero Trust {noun}?"
    if c.error:
        title = f"Revoke failed — try again? ({count} {noun})"
    elif p.at is not None:
        title = f"Schedule the removal of {count} Zero Trust {noun}?"
    blocks: list[dict[str, Any]] = [_header(title)]
    if p.at is not None:
        blocks.append(_section(f":alarm_clock: *Runs at {stamp(p.at, p.tz)}*; confirming only schedules it."))
    if c.error:
        blocks.append(_section(f":x: Last attempt failed, nothing was confirmed done: {esc(c.error)}"))
    blocks += _lines([_target_line(t) for t in p.targets], max_sections=35)
    blocks.append(_section("*Will change to:* access ✗ / gateway ✗ (removed from their Zero Trust seat)"))
    meta = [
        f"Requested by {who(p.requester)}",
        f"reason: {esc(p.reason) if p.reason else '_none given_'}",
        f"expires {when(p.expires_at)}",
    ]
    if p.two_person:
        meta.append(f"needs a second admin: {who(p.requester)} cannot confirm their own request")
    blocks.append(_context(" · ".join(meta)))
    extra = [esc(x) for x in (*c.problems, *c.notes)]
    if not c.audit_ok:
        extra.append("The audit trail could not be written (see the bot's logs).")
    if extra:
        blocks.append(_context(_clip("\n".join(extra), MAX_TEXT)))
    blocks.append(_buttons(p, count, noun))
    return _message(title, blocks)


def _buttons(p: Pending, count: int, noun: str) -> dict[str, Any]:
    people = ", ".join(t.email or t.seat_uid for t in p.targets)
    return confirm_buttons(
        p,
        label=f"{'Schedule' if p.at else 'Revoke'} {count} {noun}",
        title="Remove Zero Trust seats?",
        dialog=f"{count} {noun} will lose Access and Gateway: {people}",
        yes="Revoke",
    )


def confirm_buttons(p: Pending, *, label: str, title: str, dialog: str, yes: str) -> dict[str, Any]:
    """A card's two buttons: the danger one behind a confirm dialog, and Cancel; both carry only the id."""
    confirm = {
        "type": "button",
        "action_id": "seat_confirm",
        "text": {"type": "plain_text", "text": _clip(label, 75)},
        "style": "danger",
        "value": p.id,
        "confirm": {
            "title": {"type": "plain_text", "text": _clip(title, 100)},
            "text": {"type": "plain_text", "text": _clip(dialog, 300)},
            "confirm": {"type": "plain_text", "text": yes},
            "deny": {"type": "plain_text", "text": "Back"},
            "style": "danger",
        },
    }
    cancel = {
        "type": "button",
        "action_id": "seat_cancel",
        "text": {"type": "plain_text", "text": "Cancel"},
        "value": p.id,
    }
    return {"type": "actions", "block_id": "seat_actions", "elements": [confirm, cancel]}


def progress(p: Pending) -> Message:
    text = f":hourglass_flowing_sand: Revoking {len(p.targets)} seat(s)…"
    return _message(text, [_section(text)])


def _seat_line(t: PendingTarget, seat: Seat | None) -> str:
    """One seat of an outcome: the whole seat UID (to match the ticket) and what Cloudflare returned."""
    person = f"*{esc(t.email)}* — seat `{esc(t.seat_uid)}`" if t.email else f"seat `{esc(t.seat_uid)}`"
    if seat is None:
        return f"• :warning: {person} — *not confirmed*: Cloudflare's answer did not include this seat"
    state = flags(seat.access_seat, seat.gateway_seat)
    updated = f" — updated_at {esc(seat.updated_at)}" if seat.updated_at else " — no updated_at returned"
    if not seat.removed:
        return f"• :warning: {person} — *not confirmed*: Cloudflare returned {state}{updated}"
    return f"• :white_check_mark: {person} — {state}{updated}"


def outcome(o: Outcome) -> Message:
    p = o.pending
    done = sum(r.confirmed for r in o.results)
    title = (
        f"Zero Trust seats revoked: {done} of {len(o.results)}"
        if o.all_confirmed
        else f"Revoke partly confirmed: {done} of {len(o.results)} seats"
    )
    blocks = [_header(title), *_lines([_seat_line(r.target, r.seat) for r in o.results], max_sections=44)]
    blocks.append(_context(_trailer(p, o.confirmer, o.audit_ok)))
    return _message(title, blocks, response_type="in_channel")


def _trailer(p: Pending, confirmer: str, audit_ok: bool) -> str:
    parts = [
        f"Requested by {who(p.requester)}",
        f"confirmed by {who(confirmer)}",
        f"reason: {esc(p.reason) if p.reason else '_none given_'}",
    ]
    if not audit_ok:
        parts.append(":warning: audit trail write failed (see the bot's logs)")
    return " · ".join(parts)


def failure(f: Failure) -> Message:
    done = [_seat_line(r.target, r.seat) for r in f.done]
    if f.retry is not None:
        msg = card(Card(f.retry, error=f.error, audit_ok=f.audit_ok))
        if done:  # earlier chunks went through: say exactly which, above the buttons
            note = _context(_clip("Removed before the failure:\n" + "\n".join(done), MAX_TEXT))
            msg["blocks"].insert(-1, note)
        return msg
    text = f":x: Revoke failed, nothing more was confirmed done: {esc(f.error)}. Run the command again."
    blocks = [_section(text)]
    if done:
        blocks.append(_context(_clip("Removed before the failure:\n" + "\n".join(done), MAX_TEXT)))
    return _message(text, [*blocks, _context(_trailer(f.pending, f.confirmer, f.audit_ok))])


def cancelled(c: Cancelled) -> Message:
    text = f"Cancelled by {who(c.by)}: nothing was changed."
    if not c.audit_ok:
        text += " (The audit trail could not be written.)"
    return _message(text, [_section(f":no_entry_sign: {text}")])


def done_note() -> Message:
    text = "Done: the result is posted in the channel."
    return _message(text, [_section(text)])


def _user_line(u: AccessUser) -> str:
    login = esc(u.last_successful_login) if u.last_successful_login else "never"
    return (
        f"• *{esc(u.email or '?')}* ({esc(u.name or 'no name')}) — seat `{esc(u.seat_uid or '?')}` — "
        f"{flags(u.access_seat, u.gateway_seat)} — last login {login}"
    )


def status_report(r: StatusReport) -> Message:
    title = f"Seat status ({len(r.users)} found)"
    blocks = [_header(title), *_lines([_user_line(u) for u in r.users], max_sections=40)]
    if r.problems:
        blocks.append(_context(_clip("\n".join(esc(p) for p in r.problems), MAX_TEXT)))
    if r.source:
        blocks.append(_context(esc(r.source)))
    return _message(title, blocks)


_SHOWN_SEATS = 3


def _seat_list(seats: list[Any]) -> str:
    """Seat UIDs in full, the first few only when there are many."""
    shown = ", ".join(f"`{esc(uid)}`" for uid in seats[:_SHOWN_SEATS])
    more = len(seats) - _SHOWN_SEATS
    return f"{shown} and {more} more" if more > 0 else shown


def _event_line(e: dict[str, Any], seats_by_id: dict[str, list[Any]]) -> str:
    at = e.get("at")
    stamp = when(float(at)) if isinstance(at, int | float) else "?"
    actor = who(str(e["user"])) if e.get("user") else "?"
    bits = [f"{stamp} *{esc(e.get('event', '?'))}* by {actor}"]
    seats = e.get("seats") if isinstance(e.get("seats"), list) else seats_by_id.get(str(e.get("id")))
    if e.get("seat_uid"):
        bits.append(f"seat `{esc(e['seat_uid'])}`")
    elif seats:
        bits.append(f"{'seat' if len(seats) == 1 else f'{len(seats)} seats'} {_seat_list(seats)}")
    elif isinstance(e.get("targets"), list) and e["targets"]:
        bits.append(f"targets {_seat_list(e['targets'])}")
    elif e.get("sweep"):
        bits.append(f"idle sweep of {esc(e['sweep'])} seats" if e["sweep"] is not True else "idle sweep")
    elif e.get("id"):
        bits.append(f"seats not in this window (card {esc(str(e['id'])[:8])}…)")
    for key in ("email", "why", "error", "cf_ray", "reason"):
        if e.get(key):
            bits.append(f"{key}: {esc(e[key])}")
    return " · ".join(bits)


def audit_report(r: AuditReport) -> Message:
    title = f"Last {len(r.events)} audit events"
    if not r.events:
        return _message("No audit events yet.", [_section("No audit events yet.")])
    # Older events (and clicks refused before their card was read) name their seats through the
    # `requested` event of the same card.
    seats_by_id = {
        str(e["id"]): e["seats"] for e in r.events if e.get("id") and isinstance(e.get("seats"), list)
    }
    lines = [_event_line(e, seats_by_id) for e in r.events]
    return _message(title, [_header(title), *_lines(lines, max_sections=45)])
