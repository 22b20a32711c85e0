"""What scheduling answers (plain data, rendered by bot/slack/schedule_blocks.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.domain.models import AccessUser, Pending, PendingTarget
from bot.domain.outcomes import Failure, SeatResult
from bot.state.schedules import Entry

LATE_AFTER = 15.0  # seconds past the due time after which a firing says how late it ran


@dataclass(frozen=True)
class ScheduleConfirmed:
    """A confirmed card became a scheduled removal."""

    entry: Entry
    audit_ok: bool = True
    late: bool = False  # the time had passed when it was confirmed: it runs now


@dataclass(frozen=True)
class ScheduleList:
    """`/seat scheduled`, or the existing schedules when a seat is scheduled again."""

    entries: tuple[Entry, ...]
    duplicate: bool = False  # shown because the new request would schedule these seats twice
    total: int = 0  # how many there are in all (the list may be cut)
    lost_since: str | None = None  # Redis was found empty: what it says (schedules before it are gone)


@dataclass(frozen=True)
class Unscheduled:
    entry: Entry
    by: str
    audit_ok: bool = True


@dataclass(frozen=True)
class Moved:
    """The scheduled seat is no longer this person's: Cloudflare lists them with other seat(s) now."""

    target: PendingTarget
    now: tuple[AccessUser, ...]


@dataclass(frozen=True)
class Fired:
    """A scheduled removal ran: what Cloudflare confirmed, what was already gone, what failed.

    Every seat is in exactly one of: `results` (PATCHed now), `earlier` (PATCHed by a firing that
    stopped before recording it; confirmed removed now), `gone` (Cloudflare shows it removed, and this
    schedule never sent it), `moved`, `vanished` (no user holds it and nobody has the email), or
    `failure` (not sent: Cloudflare failed, or the seat could not be looked up)."""

    entry: Entry
    results: tuple[SeatResult, ...]
    gone: tuple[PendingTarget, ...] = ()
    failure: Failure | None = None  # set when Cloudflare kept failing past the retry window
    attempts: int = 1
    audit_ok: bool = True
    earlier: tuple[SeatResult, ...] = ()
    moved: tuple[Moved, ...] = ()
    vanished: tuple[PendingTarget, ...] = ()
    offer: Pending | None = None  # a card to remove the moved people's new seats (an admin's click)
    fired_at: float = 0.0  # when this firing looked the seats up
    sent_at: float | None = None  # when the PATCH was first sent (by this firing or an earlier one)

    @property
    def late_by(self) -> float:
        return max(0.0, self.fired_at - self.entry.at)


def stamp(at: float, tz: str) -> str:
    """`2026-12-04 17:00:00 Europe/Paris (16:00:00 UTC)`: the time zone used, and UTC."""
    local = datetime.fromtimestamp(at, ZoneInfo(tz))
    utc = datetime.fromtimestamp(at, UTC)
    if tz == "UTC":
        return utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{local:%Y-%m-%d %H:%M:%S} {tz} ({utc:%Y-%m-%d %H:%M:%S} UTC)"
