"""Block Kit for idle seats: the `/seat idle` report, a sweep's progress and its outcome. Pure functions.

Same rules as `blocks`: every user- or API-supplied string is escaped, messages stay within 50 blocks
and 3000 characters per text, and any number of seats is summarised (the full list goes in the CSV).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bot.app.seat_lookup import age_text
from bot.domain.idle import OLDEST_SHOWN, IdleReport, IdleSeat, SourceInfo, SweepOutcome, SweepProgress
from bot.domain.models import Pending
from bot.slack.blocks import confirm_buttons
from bot.slack.kit import Message, clip, compose, context, esc, header, line_sections, section, when, who

MAX_LISTED_FAILURES = 40


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def source_line(info: SourceInfo, now: float) -> str:
    if info.kind == "directory":
        fresh = "the seat directory"
        if info.synced_at:
            fresh += f", synced {age_text(now - info.synced_at)} ago"
    else:
        fresh = "a full listing from Cloudflare just now"
    if not info.complete:
        fresh += f" · :warning: incomplete: {esc(info.note or 'the listing stopped short')}"
    return f"From {fresh}."


def seat_line(s: IdleSeat, now: float) -> str:
    login = f"last sign-in {esc(s.last_login[:10])}" if s.last_login else "never signed in"
    return f"• *{esc(s.email or '?')}* — {login} ({s.idle_days(now)} days) — seat `{esc(s.seat_uid)}`"


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d-%H%M")


def report_filename(r: IdleReport) -> str:
    return f"idle-seats-{r.days}d-{_stamp(r.now)}.csv"


def outcome_filename(o: SweepOutcome) -> str:
    return f"freed-seats-{_stamp(o.now)}.csv"


def idle_report(r: IdleReport) -> Message:
    count = len(r.idle)
    title = f"{_n(count, 'idle seat')} of {r.in_use:,} in use (no sign-in for {r.days}+ days)"
    blocks: list[dict[str, Any]] = [header(title)]
    summary = f"*{count:,}* idle · *{r.in_use:,}* seats in use · {r.users:,} users in the account" + (
        f" · {r.excluded:,} idle but excluded (SEATBOT_IDLE_EXCLUDE)" if r.excluded else ""
    )
    blocks.append(section(summary))
    if count:
        shown = min(count, OLDEST_SHOWN)
        blocks.append(context(f"The oldest {shown}:" if count > shown else "All of them, oldest first:"))
        blocks += line_sections([seat_line(s, r.now) for s in r.idle[:OLDEST_SHOWN]], max_sections=8)
        if count > shown:
            blocks.append(context(f"…and {count - shown:,} more: the full list is in the CSV file."))
    asked = f"Asked by {who(r.requester)}"
    if r.schedule is not None:
        asked = f"Periodic report (SEATBOT_IDLE_REPORT_CRON `{esc(r.schedule)}`, UTC)"
    meta = [source_line(r.source, r.now), asked]
    if r.pending is not None:
        p = r.pending
        meta += [
            f"reason: {esc(p.reason) if p.reason else '_none given_'}",
            f"expires {when(p.expires_at)}",
        ]
        if p.two_person:
            meta.append(f"needs a second admin: {who(p.requester)} cannot confirm their own request")
    blocks.append(context(" · ".join(meta)))
    notes = []
    if r.no_button and count:
        notes.append(esc(r.no_button))
    if not r.audit_ok:
        notes.append("The audit trail could not be written (see the bot's logs).")
    if notes:
        blocks.append(context("\n".join(notes)))
    if r.pending is not None:
        blocks.append(sweep_buttons(r.pending))
    elif r.schedule is not None and count:
        blocks.append(review_button(r))
    return compose(title, blocks)


def review_button(r: IdleReport) -> dict[str, Any]:
    """The periodic report's button: the clicker gets a confirmation card of their own (the same
    checks as `/seat idle`: admin, channel, reason), so the two-person rule still has a requester."""
    button = {
        "type": "button",
        "action_id": "idle_review",
        "text": {"type": "plain_text", "text": clip(f"Free {_n(len(r.idle), 'idle seat')}…", 75)},
        "value": str(r.days),
    }
    return {"type": "actions", "block_id": "idle_review", "elements": [button]}


def sweep_buttons(p: Pending) -> dict[str, Any]:
    """The same confirmation as a revoke card: danger style, a dialog, one-time claim by id."""
    seats = _n(p.sweep, "idle seat")
    return confirm_buttons(
        p,
        label=f"Free {seats}",
        title="Free idle seats?",
        dialog=f"{seats} will lose Access and Gateway. Each is checked again first: anyone who "
        "signed in since this report is skipped.",
        yes="Free them",
    )


def sweep_progress(p: SweepProgress) -> Message:
    if p.done == 0:
        chunks = -(-p.total // 50)
        text = f":hourglass_flowing_sand: Freeing {_n(p.total, 'idle seat')} ({_n(chunks, 'request')} of 50)…"
    else:
        eta = f", about {age_text(p.eta_seconds)} left" if p.eta_seconds is not None else ""
        text = f":hourglass_flowing_sand: Freed {p.done:,} of {p.total:,} idle seats so far{eta}…"
    return compose(text, [section(text)])


def sweep_outcome(o: SweepOutcome) -> Message:
    p = o.pending
    title = f"Idle sweep: {len(o.freed):,} freed, {len(o.skipped):,} skipped, {len(o.failed):,} failed"
    if o.finished_later:
        title = "Idle sweep, continued on the job runner: " + title.removeprefix("Idle sweep: ")
    if o.deferred:
        title += f", {o.deferred:,} continuing"
    blocks: list[dict[str, Any]] = [header(title)]
    if o.failed:
        lines = [f"• :warning: *{esc(s.email or s.seat_uid)}* — {esc(why)}" for s, why in o.failed]
        blocks.append(section("*Failed* (nothing reported done for these):"))
        blocks += line_sections(lines[:MAX_LISTED_FAILURES], max_sections=10)
        if len(lines) > MAX_LISTED_FAILURES:
            blocks.append(context(f"…and {len(lines) - MAX_LISTED_FAILURES:,} more failures."))
    if o.skipped:
        reasons = Counter(why for _, why in o.skipped)
        text = "*Skipped* (checked again at confirm): " + "; ".join(
            f"{esc(why)}: {n:,}" for why, n in reasons.most_common()
        )
        names = ", ".join(esc(s.email or s.seat_uid) for s, _ in o.skipped[:20])
        more = f" and {len(o.skipped) - 20:,} more" if len(o.skipped) > 20 else ""
        blocks.append(section(clip(f"{text}\n{names}{more}", 2900)))
    if o.deferred:
        blocks.append(
            section(
                f":hourglass: {_n(o.deferred, 'seat')} wait for the Cloudflare rate budget; the sweep "
                "continues on its own and posts its result here."
            )
        )
    if o.freed:
        blocks.append(context("The seats freed, with Cloudflare's `updated_at`, are in the CSV file."))
    parts = [
        f"Requested by {who(p.requester)}",
        f"confirmed by {who(o.confirmer)}",
        f"reason: {esc(p.reason) if p.reason else '_none given_'}",
    ]
    if not o.audit_ok:
        parts.append(":warning: audit trail write failed (see the bot's logs)")
    blocks.append(context(" · ".join(parts)))
    return compose(title, blocks, response_type="in_channel")
