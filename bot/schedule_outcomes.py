"""What scheduling answers (plain data, rendered by bot/slack/schedule_blocks.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.models import PendingTarget
from bot.outcomes import Failure, SeatResult
from bot.state.schedules import Entry


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


@dataclass(frozen=True)
class Unscheduled:
    entry: Entry
    by: str
    audit_ok: bool = True


@dataclass(frozen=True)
class Fired:
    """A scheduled removal ran: what Cloudflare confirmed, what was already gone, what failed."""

    entry: Entry
    results: tuple[SeatResult, ...]
    gone: tuple[PendingTarget, ...] = ()
    failure: Failure | None = None  # set when Cloudflare kept failing past the retry window
    attempts: int = 1
    audit_ok: bool = True


def stamp(at: float, tz: str) -> str:
    """`2026-12-04 17:00:00 Europe/Paris (16:00:00 UTC)`: the time zone used, and UTC."""
    local = datetime.fromtimestamp(at, ZoneInfo(tz))
    utc = datetime.fromtimestamp(at, UTC)
    if tz == "UTC":
        return utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{local:%Y-%m-%d %H:%M:%S} {tz} ({utc:%Y-%m-%d %H:%M:%S} UTC)"
