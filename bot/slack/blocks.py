"""Block Kit rendering: pure functions from the flow's answers to Slack message payloads.

Every user- or API-supplied string goes through `esc`; only mentions of user IDs that the bot
itself produced (`<@U…>`) are left live. Messages stay inside Block Kit's limits (bot/slack/kit.py):
at most 50 blocks, 3000 characters per text object; long target lists are summarised.
"""

from __future__ import annotations

import re
from typing import Any

from bot.domain.help import GUIDE, TARGETS, VERBS
from bot.domain.models import WORKFLOW_REQUESTER, AccessUser, Pending, PendingTarget, Seat
from bot.domain.outcomes import (
    Approved,
    AuditReport,
    Cancelled,
    Card,
    Contacts,
    Failure,
    Help,
    Notice,
    Outcome,
    StatusReport,
)
from bot.domain.parse import USAGE
from bot.domain.schedule_outcomes import stamp
from bot.slack.kit import (  # Message and esc are re-exported: every renderer and sender uses them
    MAX_TEXT,
    USER_ID,
    clip,
    compose,
    context,
    flags,
    header,
    line_sections,
    section,
    when,
    who,
)
from bot.slack.kit import Message as Message
from bot.slack.kit import esc as esc

_ICON = {
    "info": ":information_source:",
    "error": ":warning:",
    "refused": ":no_entry:",
    "unavailable": ":hourglass:",
    "expired": ":hourglass:",
}


def _target_line(t: PendingTarget) -> str:
    name = f" ({esc(t.name)})" if t.name else ""
    person = esc(t.email) if t.email else ("seat " + esc(t.seat_uid))
    if t.label.startswith("<@") and t.label.endswith(">") and USER_ID.fullmatch(t.label[2:-1]):
        person = f"{t.label} {person}"
    return f"• *{person}*{name} — seat `{esc(t.seat_uid)}` — now {flags(t.access_seat, t.gateway_seat)}"


def notice(n: Notice) -> Message:
    text = esc(n.text) + (f" {contacts(n.contacts)}" if n.contacts is not None else "")
    blocks = [section(f"{_ICON.get(n.kind, '')} {text}".strip())]
    if n.usage and n.kind != "info":
        blocks.append(context(esc(USAGE)))
    return compose(text, blocks)


_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,20}$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,20}$")
_SHOWN_CONTACTS = 10


def contacts(c: Contacts) -> str:
    """People, groups and channels as live mentions (IDs that are not Slack IDs are left out)."""
    names = [f"<@{u}>" for u in c.users if USER_ID.match(u)]
    names += [f"a member of <!subteam^{g}>" for g in c.groups if _GROUP_ID.match(g)]
    names += [f"<#{ch}>" for ch in c.channels if _CHANNEL_ID.match(ch)]
    if not names:
        return "_nobody is configured_."
    if len(names) > _SHOWN_CONTACTS:
        names = [*names[:_SHOWN_CONTACTS], f"{len(names) - _SHOWN_CONTACTS} more"]
    return (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]) + "."


def help_card(h: Help) -> Message:
    """Short and scannable: a line per verb with an example, who may use them, where the guide is."""
    title = "/seat: Cloudflare Zero Trust seats"
    lines = [f"• `{esc(v.example)}` — {esc(v.what)}" for v in VERBS]
    guide = f"<{h.guide_url}|the full guide>" if h.guide_url and _LINKABLE.match(h.guide_url) else GUIDE
    meta = [
        esc(TARGETS),
        f"All but `/seat help` need a seat-bot admin: {contacts(h.admins)}",
        f"More: {guide}.",
    ]
    return compose(title, [header(title), *line_sections(lines, max_sections=10), context("\n".join(meta))])


_LINKABLE = re.compile(r"^https?://[^\s<>|]+$")


def card(c: Card) -> Message:
    p = c.pending
    count = len(p.targets)
    noun = "seat" if count == 1 else "seats"
    title = f"Revoke {count} Zero Trust {noun}?"
    if c.error:
        title = f"Revoke failed — try again? ({count} {noun})"
    elif p.at is not None:
        title = f"Schedule the removal of {count} Zero Trust {noun}?"
    blocks: list[dict[str, Any]] = [header(title)]
    if p.at is not None:
        blocks.append(section(f":alarm_clock: *Runs at {stamp(p.at, p.tz)}*; confirming only schedules it."))
    if c.error:
        blocks.append(section(f":x: Last attempt failed, nothing was confirmed done: {esc(c.error)}"))
    blocks += line_sections([_target_line(t) for t in p.targets], max_sections=35)
    blocks.append(section("*Will change to:* access ✗ / gateway ✗ (removed from their Zero Trust seat)"))
    meta = [
        requested_by(p),
        f"reason: {esc(p.reason) if p.reason else '_none given_'}",
        f"expires {when(p.expires_at)}",
    ]
    if p.two_person and p.requester == WORKFLOW_REQUESTER:
        meta.append("needs two admins: one approves, another confirms")
    elif p.two_person:
        meta.append(f"needs a second admin: {who(p.requester)} cannot confirm their own request")
    blocks.append(context(" · ".join(meta)))
    extra = [esc(x) for x in (*c.problems, *c.notes)]
    if not c.audit_ok:
        extra.append("The audit trail could not be written (see the bot's logs).")
    if extra:
        blocks.append(context(clip("\n".join(extra), MAX_TEXT)))
    blocks.append(_buttons(p, count, noun))
    return compose(title, blocks)


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
        "text": {"type": "plain_text", "text": clip(label, 75)},
        "style": "danger",
        "value": p.id,
        "confirm": {
            "title": {"type": "plain_text", "text": clip(title, 100)},
            "text": {"type": "plain_text", "text": clip(dialog, 300)},
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
    return compose(text, [section(text)])


def seat_line(t: PendingTarget, seat: Seat | None) -> str:
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
    blocks = [
        header(title),
        *line_sections([seat_line(r.target, r.seat) for r in o.results], max_sections=44),
    ]
    blocks.append(context(_trailer(p, o.confirmer, o.audit_ok)))
    return compose(title, blocks, response_type="in_channel")


def requested_by(p: Pending) -> str:
    """Who asked: a person Slack identified, or a workflow and who it named (typed in, unverified)."""
    if p.requester != WORKFLOW_REQUESTER:
        return f"Requested by {who(p.requester)}"
    named = (
        f" naming {who(p.named_requester)} (the workflow's input, not verified)" if p.named_requester else ""
    )
    return f"Requested by a workflow{named}"


def approved(a: Approved) -> Message:
    targets = ", ".join(t.email or t.seat_uid for t in a.pending.targets)
    text = (
        f"Approved by {who(a.by)}: removing {esc(targets)} now needs a second admin's Revoke on the card "
        "(two-person rule)."
    )
    if not a.audit_ok:
        text += " (The audit trail could not be written.)"
    return compose(text, [section(f":white_check_mark: {text}")], response_type="in_channel")


def _trailer(p: Pending, confirmer: str, audit_ok: bool) -> str:
    parts = [requested_by(p)]
    if p.approved_by:
        parts.append(f"approved by {who(p.approved_by)}")
    parts += [
        f"confirmed by {who(confirmer)}",
        f"reason: {esc(p.reason) if p.reason else '_none given_'}",
    ]
    if not audit_ok:
        parts.append(":warning: audit trail write failed (see the bot's logs)")
    return " · ".join(parts)


def failure(f: Failure) -> Message:
    done = [seat_line(r.target, r.seat) for r in f.done]
    if f.retry is not None:
        msg = card(Card(f.retry, error=f.error, audit_ok=f.audit_ok))
        if done:  # earlier chunks went through: say exactly which, above the buttons
            note = context(clip("Removed before the failure:\n" + "\n".join(done), MAX_TEXT))
            msg["blocks"].insert(-1, note)
        return msg
    text = f":x: Revoke failed, nothing more was confirmed done: {esc(f.error)}. Run the command again."
    blocks = [section(text)]
    if done:
        blocks.append(context(clip("Removed before the failure:\n" + "\n".join(done), MAX_TEXT)))
    return compose(text, [*blocks, context(_trailer(f.pending, f.confirmer, f.audit_ok))])


def cancelled(c: Cancelled) -> Message:
    text = f"Cancelled by {who(c.by)}: nothing was changed."
    if not c.audit_ok:
        text += " (The audit trail could not be written.)"
    return compose(text, [section(f":no_entry_sign: {text}")])


def done_note() -> Message:
    text = "Done: the result is posted in the channel."
    return compose(text, [section(text)])


def _user_line(u: AccessUser) -> str:
    login = esc(u.last_successful_login) if u.last_successful_login else "never"
    return (
        f"• *{esc(u.email or '?')}* ({esc(u.name or 'no name')}) — seat `{esc(u.seat_uid or '?')}` — "
        f"{flags(u.access_seat, u.gateway_seat)} — last login {login}"
    )


def status_report(r: StatusReport) -> Message:
    title = f"Seat status ({len(r.users)} found)"
    if r.failed:  # a failed look-up is not "0 found"
        title = f"Seat status: {r.failed} look-up(s) failed" + (f", {len(r.users)} found" if r.users else "")
    blocks = [header(title), *line_sections([_user_line(u) for u in r.users], max_sections=40)]
    if r.advice:
        blocks.append(section(f":warning: *What to do:* {esc(r.advice)}"))
    if r.problems or r.notes:
        blocks.append(context(clip("\n".join(esc(p) for p in (*r.problems, *r.notes)), MAX_TEXT)))
    if r.source:
        blocks.append(context(esc(r.source)))
    return compose(title, blocks)


_SHOWN_SEATS = 3


def _seat_list(seats: list[Any]) -> str:
    """Seat UIDs in full, the first few only when there are many."""
    shown = ", ".join(f"`{esc(uid)}`" for uid in seats[:_SHOWN_SEATS])
    more = len(seats) - _SHOWN_SEATS
    return f"{shown} and {more} more" if more > 0 else shown


def event_line(e: dict[str, Any], seats_by_id: dict[str, list[Any]]) -> str:
    at = e.get("at")
    stamp = when(float(at)) if isinstance(at, int | float) else "?"
    actor = who(str(e["user"])) if e.get("user") else "?"
    bits = [f"{stamp} *{esc(e.get('event', '?'))}* by {actor}"]
    seats = e.get("seats") if isinstance(e.get("seats"), list) else seats_by_id.get(str(e.get("id")))
    if isinstance(e.get("due"), int | float):  # a scheduled removal's time, not the event's
        bits.append(f"due {when(float(e['due']))}")
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
    noise: list[dict[str, Any]] = []
    if r.noise:  # kept apart: no amount of them pushes a real event out
        total = f"{r.noise_total:,} in all" if r.noise_total else "latest"
        noise.append(context(f"Refused and expired clicks, kept apart ({total}); the latest:"))
        noise += line_sections([event_line(e, {}) for e in r.noise], max_sections=3)
    if not r.events:
        return compose("No audit events yet.", [section("No audit events yet."), *noise])
    # Older events (and clicks refused before their card was read) name their seats through the
    # `requested` event of the same card.
    seats_by_id = {
        str(e["id"]): e["seats"] for e in r.events if e.get("id") and isinstance(e.get("seats"), list)
    }
    lines = [event_line(e, seats_by_id) for e in r.events]
    return compose(title, [header(title), *line_sections(lines, max_sections=45), *noise])
