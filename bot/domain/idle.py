"""Idle seats: who holds a seat and has not signed in for `days` days. Pure: no I/O, no Slack.

The rule (README "Idle seats"): a user is idle when they hold a seat (`access_seat` or
`gateway_seat` true) and either their `last_successful_login` is strictly older than `days` days, or
they never signed in and were created strictly more than `days` days ago. A timestamp the bot cannot
read, a never-signed-in user without a creation date and a seat UID Cloudflare would refuse all make a
user *not* idle: the bot only lists what it can prove.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.domain.models import SEAT_UID_RE, AccessUser, Pending

DAY = 86_400.0
OLDEST_SHOWN = 20
CSV_COLUMNS = (
    "email",
    "name",
    "seat_uid",
    "last_successful_login",
    "created_at",
    "idle_days",
)


_FACT_FIELDS = ("email", "name", "access_seat", "gateway_seat", "last_successful_login", "created_at")


class UserFacts(Protocol):
    """What the idle rule reads of a user: an AccessUser, or a directory Fact (cheaper by far)."""

    @property
    def seat_uid(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def access_seat(self) -> bool | None: ...
    @property
    def gateway_seat(self) -> bool | None: ...
    @property
    def last_successful_login(self) -> str | None: ...
    @property
    def created_at(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Fact:
    """One seat as the directory keeps it for the idle rule (a plain record: no validation cost)."""

    seat_uid: str
    email: str | None
    name: str | None
    access_seat: bool | None
    gateway_seat: bool | None
    last_successful_login: str | None
    created_at: str | None


def fact(item: Mapping[str, Any]) -> str:
    """What the idle rule reads of one user, as compact JSON (the seat directory keeps it per seat)."""
    return json.dumps([item.get(name) for name in _FACT_FIELDS], separators=(",", ":"))


def read_fact(seat_uid: str, raw: str | bytes) -> Fact | None:
    """The seat a directory fact describes; None if it cannot be read (wrong shape or types)."""
    try:
        values = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != len(_FACT_FIELDS):
        return None
    email, name, access, gateway, last_login, created = values
    if not all(v is None or type(v) is str for v in (email, name, last_login, created)):
        return None
    if not all(v is None or type(v) is bool for v in (access, gateway)):
        return None
    return Fact(seat_uid, email, name, access, gateway, last_login, created)


def user_from_fact(seat_uid: str, raw: str | bytes) -> AccessUser | None:
    """The AccessUser a directory fact describes (None if it cannot be read)."""
    found = read_fact(seat_uid, raw)
    if found is None:
        return None
    return AccessUser.model_validate({name: getattr(found, name) for name in ("seat_uid", *_FACT_FIELDS)})


class SourceChanged(Exception):
    """The user listing changed while it was read (a directory sync swapped in): read it again."""


def parse_time(value: str | None) -> float | None:
    """Cloudflare's ISO 8601 timestamps (`Z`, offsets, any fraction) as epoch seconds; None if unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:  # Cloudflare writes UTC; a bare timestamp is read as UTC too
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True)
class Exclusions:
    """People (`a@b.c`) and domains (`@b.c`, which also covers its subdomains) never listed as idle."""

    emails: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Exclusions:
        emails, domains = set(), []
        for raw in items:
            item = raw.strip().casefold()
            if not item:
                continue
            if item.startswith("@"):
                domains.append(item[1:].strip("."))
            elif "@" in item:
                emails.add(item)
            else:
                raise ValueError(f"`{raw}` is neither an email nor an @domain")
        return cls(frozenset(emails), tuple(sorted(set(domains))))

    def __contains__(self, email: object) -> bool:
        if not isinstance(email, str) or not email:
            return False
        folded = email.strip().casefold()
        if folded in self.emails:
            return True
        domain = folded.rpartition("@")[2]
        return any(domain == d or domain.endswith("." + d) for d in self.domains)

    def __bool__(self) -> bool:
        return bool(self.emails or self.domains)


@dataclass(frozen=True)
class IdleSeat:
    """One idle seat, as shown and as stored in a sweep (compact: a sweep can hold many thousands)."""

    seat_uid: str
    email: str | None
    name: str | None
    last_login: str | None  # as Cloudflare wrote it; None = never signed in
    created_at: str | None
    since: float  # epoch of the last sign-in, or of creation for never-signed-in users

    def row(self) -> list[str | None]:
        return [self.seat_uid, self.email, self.name, self.last_login, self.created_at, str(self.since)]

    @classmethod
    def from_row(cls, row: list[str | None]) -> IdleSeat:
        uid, email, name, last_login, created_at, since = row
        return cls(str(uid), email, name, last_login, created_at, float(since or 0))

    def idle_days(self, now: float) -> int:
        return int((now - self.since) // DAY)


@dataclass(frozen=True)
class IdleRule:
    days: int
    now: float
    exclude: Exclusions = field(default_factory=Exclusions)

    @property
    def cutoff(self) -> float:
        return self.now - self.days * DAY

    def holds_seat(self, user: UserFacts) -> bool:
        return bool(user.access_seat) or bool(user.gateway_seat)

    def idle(self, user: UserFacts) -> IdleSeat | None:
        """The user as an IdleSeat when the rule says idle (exclusions not applied), else None."""
        if not self.holds_seat(user) or not user.seat_uid or not SEAT_UID_RE.fullmatch(user.seat_uid):
            return None
        if user.last_successful_login:
            since = parse_time(user.last_successful_login)
        else:
            since = parse_time(user.created_at)
        if since is None or not since < self.cutoff:  # exactly `days` old is not idle yet
            return None
        return IdleSeat(
            user.seat_uid, user.email, user.name, user.last_successful_login or None, user.created_at, since
        )


@dataclass
class IdleTally:
    """Counts a user listing batch by batch, keeping only the idle seats (memory ∝ idle, not users)."""

    rule: IdleRule
    users: int = 0
    in_use: int = 0
    excluded: int = 0
    idle: list[IdleSeat] = field(default_factory=list)

    def add(self, users: Iterable[UserFacts]) -> None:
        for user in users:
            self.users += 1
            if not self.rule.holds_seat(user):
                continue
            self.in_use += 1
            found = self.rule.idle(user)
            if found is None:
                continue
            if found.email in self.rule.exclude:
                self.excluded += 1
                continue
            self.idle.append(found)

    def sorted(self) -> list[IdleSeat]:
        """Oldest first; ties by email so the order is stable."""
        return sorted(self.idle, key=lambda s: (s.since, s.email or "", s.seat_uid))


def find_idle(users: Iterable[UserFacts], rule: IdleRule) -> IdleTally:
    """The whole rule over one listing."""
    tally = IdleTally(rule)
    tally.add(users)
    tally.idle = tally.sorted()
    return tally


# OWASP's CSV-injection rule: a cell a spreadsheet could read as a formula starts with one of these.
# Spreadsheets also read the full-width and small forms (U+FF1D, U+FF0B, U+FF0D, U+FF20, U+FE66…,
# folded by NFKC) and the minus sign as formula starts, and skip leading blanks and line breaks; `;`
# and `,` separate cells in some locales. Such a cell is prefixed with ' (shown, never evaluated).
_FORMULA_STARTS = frozenset("=+-@\t\r\n ;,|%\u2212\u00a0\u3000")


def _cell(value: object) -> str:
    """CSV cell safe to open in a spreadsheet: one that could start a formula is prefixed with '."""
    text = "" if value is None else str(value)
    first = unicodedata.normalize("NFKC", text[:1])[:1]
    return "'" + text if text and (first in _FORMULA_STARTS or text[0] in _FORMULA_STARTS) else text


def idle_csv(seats: Iterable[IdleSeat], *, now: float, extra: dict[str, str] | None = None) -> bytes:
    """The CSV uploaded with a report or a sweep outcome (UTF-8, one header row).

    `extra` maps a seat UID to a last column (a sweep's `updated_at` from Cloudflare)."""
    out = io.StringIO()
    # RFC 4180 line ends: the writer then quotes a cell holding a bare \r as well as \n, which a
    # spreadsheet would otherwise read as a new row (whose first cell could be a formula)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, "updated_at"] if extra is not None else CSV_COLUMNS)
    for s in seats:
        row = [_cell(s.email), _cell(s.name), _cell(s.seat_uid)]
        row += [_cell(s.last_login or "never"), _cell(s.created_at), str(s.idle_days(now))]
        if extra is not None:
            row.append(_cell(extra.get(s.seat_uid, "")))
        writer.writerow(row)
    return out.getvalue().encode()


# -- what the idle flow answers (rendered by bot.slack.idle_blocks) ------------------------


@dataclass(frozen=True)
class SourceInfo:
    """Where a listing came from and how fresh it is."""

    kind: str  # "directory" or "scan"
    synced_at: float | None  # when the data was read from Cloudflare
    complete: bool = True  # False: the listing stopped short (page cap, budget), counts are partial
    note: str | None = None


@dataclass(frozen=True)
class IdleReport:
    """`/seat idle`: the counts, every idle seat (oldest first) and, when allowed, the sweep's card."""

    requester: str
    channel: str
    days: int
    now: float
    users: int
    in_use: int
    excluded: int
    idle: tuple[IdleSeat, ...]
    source: SourceInfo
    pending: Pending | None = None  # the "Free N idle seats" confirmation, if one was made
    no_button: str | None = None  # why there is no button (reason missing, channel, nothing idle)
    audit_ok: bool = True
    schedule: str | None = None  # the periodic report's cron: its button asks for a card of one's own


@dataclass(frozen=True)
class SweepProgress:
    pending: Pending
    total: int
    done: int
    eta_seconds: float | None = None


@dataclass(frozen=True)
class SweepOutcome:
    """A sweep's result: freed seats (with Cloudflare's `updated_at`), skipped and failed ones."""

    pending: Pending
    confirmer: str
    now: float
    freed: tuple[IdleSeat, ...]
    updated_at: dict[str, str]
    skipped: tuple[tuple[IdleSeat, str], ...] = ()
    failed: tuple[tuple[IdleSeat, str], ...] = ()
    deferred: int = 0  # seats left for the job runner (rate budget); 0 when the sweep is finished
    audit_ok: bool = True
    finished_later: bool = False  # posted by the job runner after a budget pause


class Partial(dict[str, UserFacts]):
    """Users found by a listing that was cut short: a seat missing from it may still be held."""


def recheck(
    shown: Iterable[IdleSeat], current: Mapping[str, UserFacts], rule: IdleRule
) -> tuple[list[IdleSeat], list[tuple[IdleSeat, str]]]:
    """At confirm time: the seats still idle (to free) and the ones skipped, with why."""
    keep: list[IdleSeat] = []
    skipped: list[tuple[IdleSeat, str]] = []
    for seat in shown:
        user = current.get(seat.seat_uid)
        why = None
        if user is None and isinstance(current, Partial):  # not seen is not gone: never sent unchecked
            why = "not checked: the user listing stopped at CLOUDFLARE_MAX_PAGES"
        elif user is None:
            why = "no longer in the account's user list"
        elif (user.email or "").casefold() != (seat.email or "").casefold():
            why = "the seat now belongs to another email"
        elif not rule.holds_seat(user):
            why = "the seat is already free"
        elif user.email in rule.exclude:
            why = "excluded (SEATBOT_IDLE_EXCLUDE)"
        elif rule.idle(user) is None:
            why = "signed in since the report"
        if why is None:
            keep.append(seat)
        else:
            skipped.append((seat, why))
    return keep, skipped
