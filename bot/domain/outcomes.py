"""What the flow answers: plain data that `blocks` renders and `app` or `shell` delivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bot.domain.idle import IdleReport, SweepOutcome
from bot.domain.models import AccessUser, Pending, PendingTarget, Seat

NoticeKind = Literal["info", "error", "refused", "unavailable", "expired"]


@dataclass(frozen=True)
class Contacts:
    """Who to ask or where to go, by Slack ID (from settings): shown as live mentions, never as the
    names of settings a person in Slack cannot see."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notice:
    """A short message. `replace` swaps the card it came from; otherwise only the clicker sees it."""

    text: str
    kind: NoticeKind = "info"
    replace: bool = False
    usage: bool = False
    contacts: Contacts | None = None  # named after `text`: "… ask one of them: @ann, @bob."


@dataclass(frozen=True)
class Help:
    """The `/seat help` card (verbs: bot/domain/help.py): the admins named, the guide linked if configured."""

    admins: Contacts
    guide_url: str | None = None


@dataclass(frozen=True)
class Card:
    """A confirmation card for a pending revoke (or a fresh try after a failure)."""

    pending: Pending
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None  # set on a fresh-try card: what failed last time
    audit_ok: bool = True


@dataclass(frozen=True)
class StatusReport:
    users: tuple[AccessUser, ...]
    problems: tuple[str, ...] = ()
    source: str | None = None  # how the answer was found (the seat directory's age), if worth saying
    notes: tuple[str, ...] = ()  # duplicates merged
    failed: int = 0  # targets whose look-up failed: the headline says so
    advice: str | None = None  # what to do about those failures


@dataclass(frozen=True)
class AuditReport:
    events: tuple[dict[str, Any], ...]  # real events, newest first
    noise: tuple[dict[str, Any], ...] = ()  # the latest refusals and expired clicks, kept apart
    noise_total: int = 0  # every refusal or expired click counted, stored or not


@dataclass(frozen=True)
class SeatResult:
    target: PendingTarget
    seat: Seat | None  # None: Cloudflare's result did not include this seat

    @property
    def confirmed(self) -> bool:
        return self.seat is not None and self.seat.removed


@dataclass(frozen=True)
class Outcome:
    """Cloudflare answered the PATCH: per seat, what it returned."""

    pending: Pending
    confirmer: str
    results: tuple[SeatResult, ...]
    audit_ok: bool = True

    @property
    def all_confirmed(self) -> bool:
        return all(r.confirmed for r in self.results)


@dataclass(frozen=True)
class Failure:
    """The PATCH failed: nothing is reported done; `retry` is a fresh card's pending, if any."""

    pending: Pending
    confirmer: str
    error: str
    retry: Pending | None = None
    audit_ok: bool = True
    done: tuple[SeatResult, ...] = ()  # seats Cloudflare confirmed before the failure


@dataclass(frozen=True)
class Approved:
    """The first of two admins approved a workflow's card; a second one has to confirm it."""

    pending: Pending
    by: str
    audit_ok: bool = True


@dataclass(frozen=True)
class Cancelled:
    pending: Pending
    by: str
    audit_ok: bool = True


# Scheduling's answers (schedule_outcomes.py) join these unions; imported late: they build on these.
from bot.domain.schedule_outcomes import ScheduleConfirmed, ScheduleList, Unscheduled  # noqa: E402

CommandReply = Notice | Help | Card | StatusReport | AuditReport | IdleReport | ScheduleList
ClickReply = (
    Notice
    | Outcome
    | Failure
    | Cancelled
    | Approved
    | SweepOutcome
    | ScheduleConfirmed
    | ScheduleList
    | Unscheduled
)
