"""Where each answer goes: one pure function from the flow's reply to (message, placement).

Slack (`delivery`) and the terminal shell both use it, so they can never disagree about who sees
what: refusals go to the clicker only, outcomes into the channel, cancellations replace the card.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from bot.domain.idle import IdleReport, SweepOutcome, SweepProgress, idle_csv
from bot.domain.models import Pending
from bot.domain.outcomes import (
    Approved,
    AuditReport,
    Cancelled,
    Card,
    ClickReply,
    CommandReply,
    Failure,
    Help,
    Notice,
    Outcome,
    StatusReport,
)
from bot.domain.schedule_outcomes import ScheduleConfirmed, ScheduleList, Unscheduled
from bot.slack import blocks, idle_blocks, schedule_blocks

# ephemeral: only the person who typed or clicked; in_channel: everyone in the channel;
# replace: the card the click came from; replace_in_channel: the card, made visible to everyone.
Placement = Literal["ephemeral", "in_channel", "replace", "replace_in_channel"]


@dataclass(frozen=True)
class Upload:
    """A file for the conversation (files upload v2 in Slack; written to disk by the shell)."""

    channel: str
    filename: str
    title: str
    content: bytes


@dataclass(frozen=True)
class Reply:
    message: blocks.Message
    placement: Placement
    # After `message` is delivered, the card becomes this; if delivery failed, the card shows `message`.
    then: blocks.Message | None = None
    upload: Upload | None = None


def for_command(reply: CommandReply) -> Reply:
    if isinstance(reply, Card):
        # with the two-person rule others must see the card to confirm it
        return Reply(blocks.card(reply), "in_channel" if reply.pending.two_person else "ephemeral")
    if isinstance(reply, StatusReport):
        return Reply(blocks.status_report(reply), "ephemeral")
    if isinstance(reply, Help):
        return Reply(blocks.help_card(reply), "ephemeral")
    if isinstance(reply, AuditReport):
        return Reply(blocks.audit_report(reply), "ephemeral")
    if isinstance(reply, IdleReport):
        upload = None
        if reply.idle:
            name = idle_blocks.report_filename(reply)
            title = f"{len(reply.idle):,} idle seats ({reply.days}+ days)"
            upload = Upload(reply.channel, name, title, idle_csv(reply.idle, now=reply.now))
        shared = reply.pending is not None and reply.pending.two_person
        return Reply(idle_blocks.idle_report(reply), "in_channel" if shared else "ephemeral", upload=upload)
    if isinstance(reply, ScheduleList):
        return Reply(schedule_blocks.schedule_list(reply), "ephemeral")
    return Reply(blocks.notice(reply), "ephemeral")


def for_click(reply: ClickReply) -> Reply:
    if isinstance(reply, Notice):
        return Reply(blocks.notice(reply), "replace" if reply.replace else "ephemeral")
    if isinstance(reply, Cancelled):
        return Reply(blocks.cancelled(reply), "replace")
    if isinstance(reply, Approved):  # the card stays for the second admin; the channel hears who approved
        return Reply(blocks.approved(reply), "in_channel")
    if isinstance(reply, Failure):
        return Reply(blocks.failure(reply), "replace")
    if isinstance(reply, SweepOutcome):
        return _sweep(reply)
    if isinstance(reply, ScheduleList):  # the seats got scheduled meanwhile: show the existing one
        return Reply(schedule_blocks.schedule_list(reply), "replace")
    if isinstance(reply, Unscheduled):  # the channel hears of it from the announcement
        return Reply(blocks.notice(Notice("Cancelled: the scheduled removal will not run.")), "ephemeral")
    if isinstance(reply, ScheduleConfirmed):
        message = schedule_blocks.schedule_confirmed(reply)
        if reply.entry.pending.two_person:
            return Reply(message, "replace_in_channel")
        return Reply(message, "in_channel", then=message)
    if reply.pending.in_channel:  # the card is already in the channel: it becomes the outcome
        return Reply(blocks.outcome(reply), "replace_in_channel")
    # "posted in the channel" only when it was; otherwise the card itself shows the outcome
    return Reply(blocks.outcome(reply), "in_channel", then=blocks.done_note())


def _sweep(reply: SweepOutcome) -> Reply:
    message = idle_blocks.sweep_outcome(reply)
    upload = None
    if reply.freed:
        content = idle_csv(reply.freed, now=reply.now, extra=reply.updated_at)
        title = f"{len(reply.freed):,} seats freed"
        upload = Upload(reply.pending.channel, idle_blocks.outcome_filename(reply), title, content)
    if reply.pending.two_person:
        return Reply(message, "replace_in_channel", upload=upload)
    return Reply(message, "in_channel", then=blocks.done_note(), upload=upload)


def for_progress(status: Pending | SweepProgress) -> blocks.Message:
    """The card while a confirmed revoke or sweep runs."""
    if isinstance(status, SweepProgress):
        return idle_blocks.sweep_progress(status)
    return blocks.progress(status)


def for_audit_channel(reply: ClickReply) -> blocks.Message | None:
    """What SEATBOT_AUDIT_CHANNEL receives for a click: every outcome, failure and cancellation."""
    if isinstance(reply, Outcome):
        return blocks.outcome(reply)
    if isinstance(reply, Failure):
        return blocks.failure(dataclasses.replace(reply, retry=None))  # no live button there
    if isinstance(reply, Cancelled):
        return blocks.cancelled(reply)
    if isinstance(reply, SweepOutcome):
        return idle_blocks.sweep_outcome(reply)
    return None
