"""The idle rule, exclusions, CSV and `idle [days]` parsing: pure functions, tested at their edges."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import load_settings
from bot.domain.idle import DAY, Exclusions, IdleRule, IdleSeat, find_idle, idle_csv, parse_time, recheck
from bot.domain.models import AccessUser
from bot.domain.parse import parse
from bot.errors import ConfigError, ParseError

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def user(
    email: str,
    *,
    login: datetime | None = None,
    created: datetime | None = NOW - timedelta(days=400),
    access: bool | None = True,
    gateway: bool | None = True,
    seat: str | None = None,
) -> AccessUser:
    return AccessUser(
        email=email,
        seat_uid=seat or f"seat-{email.split('@')[0]}-1",
        access_seat=access,
        gateway_seat=gateway,
        last_successful_login=login.isoformat().replace("+00:00", "Z") if login else None,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if created else None,
    )


def rule(days: int = 30, exclude: Exclusions | None = None) -> IdleRule:
    return IdleRule(days, NOW.timestamp(), exclude or Exclusions())


def idle_emails(users: list[AccessUser], r: IdleRule) -> list[str | None]:
    return [s.email for s in find_idle(users, r).idle]


def test_exactly_days_old_is_not_idle_one_second_more_is() -> None:
    """The boundary: a sign-in exactly `days` ago is not idle; a second earlier is."""
    exact = user("exact@x.io", login=NOW - timedelta(days=30))
    older = user("older@x.io", login=NOW - timedelta(days=30, seconds=1))
    recent = user("recent@x.io", login=NOW - timedelta(days=29, hours=23))
    assert idle_emails([exact, older, recent], rule(30)) == ["older@x.io"]
    assert idle_emails([exact, older, recent], rule(29)) == ["older@x.io", "exact@x.io", "recent@x.io"]


def test_never_signed_in_counts_from_creation() -> None:
    """Never signed in: idle only when created more than `days` ago; unknown creation is never idle."""
    old = user("old@x.io", created=NOW - timedelta(days=31))
    new = user("new@x.io", created=NOW - timedelta(days=30))
    unknown = user("unknown@x.io", created=None)
    tally = find_idle([old, new, unknown], rule(30))
    assert [s.email for s in tally.idle] == ["old@x.io"]
    assert tally.idle[0].last_login is None and tally.in_use == 3


def test_seats_already_false_are_neither_in_use_nor_idle() -> None:
    """Both flags false (or missing): not a seat; one flag true is enough to hold one."""
    long_ago = NOW - timedelta(days=300)
    freed = user("freed@x.io", login=long_ago, access=False, gateway=False)
    unknown = user("unknown@x.io", login=long_ago, access=None, gateway=None)
    gateway_only = user("gw@x.io", login=long_ago, access=False, gateway=True)
    tally = find_idle([freed, unknown, gateway_only], rule())
    assert [s.email for s in tally.idle] == ["gw@x.io"]
    assert (tally.users, tally.in_use) == (3, 1)


def test_exclusions_by_email_and_domain_never_listed() -> None:
    """Emails match case-insensitively; @domain covers the domain and its subdomains, not look-alikes."""
    ex = Exclusions.parse(["Keep@X.io", "@contractor.example"])
    long_ago = NOW - timedelta(days=300)
    users = [
        user("keep@x.io", login=long_ago),
        user("a@contractor.example", login=long_ago),
        user("b@eu.contractor.example", login=long_ago),
        user("c@notcontractor.example", login=long_ago),
        user("d@x.io", login=long_ago),
    ]
    tally = find_idle(users, rule(exclude=ex))
    assert sorted(str(s.email) for s in tally.idle) == ["c@notcontractor.example", "d@x.io"]
    assert tally.excluded == 3
    with pytest.raises(ValueError):
        Exclusions.parse(["nonsense"])


def test_unreadable_timestamps_and_bad_seat_uids_are_not_idle() -> None:
    """Only what can be proven is listed: a garbled date or an invalid seat UID is skipped."""
    garbled = AccessUser(email="g@x.io", seat_uid="s1", access_seat=True, last_successful_login="last week")
    bad_uid = user("bad@x.io", login=NOW - timedelta(days=300), seat="not a uid!")
    assert idle_emails([garbled, bad_uid], rule()) == []
    assert parse_time("2026-11-20T09:30:00.123456789Z") is not None
    assert parse_time("2026-11-20T09:30:00") == parse_time("2026-11-20T09:30:00Z")


def test_oldest_first_with_a_stable_order() -> None:
    """Sorted by last activity, oldest first; ties by email."""
    users = [
        user("b@x.io", login=NOW - timedelta(days=100)),
        user("a@x.io", login=NOW - timedelta(days=100)),
        user("c@x.io", login=NOW - timedelta(days=200)),
    ]
    assert idle_emails(users, rule()) == ["c@x.io", "a@x.io", "b@x.io"]


def test_recheck_skips_who_signed_in_changed_hands_or_was_freed() -> None:
    """At confirm time each seat is checked again and skipped with a reason when it no longer fits."""
    long_ago = NOW - timedelta(days=300)
    shown = find_idle([user(f"{n}@x.io", login=long_ago) for n in "abcde"], rule()).idle
    current = {
        "seat-a-1": user("a@x.io", login=long_ago),
        "seat-b-1": user("b@x.io", login=NOW - timedelta(hours=1)),
        "seat-c-1": user("someone-else@x.io", login=long_ago, seat="seat-c-1"),
        "seat-d-1": user("d@x.io", login=long_ago, access=False, gateway=False),
    }
    keep, skipped = recheck(shown, current, rule())
    assert [s.email for s in keep] == ["a@x.io"]
    assert {s.email: why for s, why in skipped} == {
        "b@x.io": "signed in since the report",
        "c@x.io": "the seat now belongs to another email",
        "d@x.io": "the seat is already free",
        "e@x.io": "no longer in the account's user list",
    }


def test_csv_has_every_seat_and_defuses_formulas() -> None:
    """One row per seat; a name starting with = cannot run as a spreadsheet formula."""
    seats = [
        IdleSeat("s1", "a@x.io", "=HYPERLINK(1)", None, "2025-01-01T00:00:00Z", NOW.timestamp() - 40 * DAY),
        IdleSeat("s2", "b@x.io", "Bob, Jr.", "2026-01-01T00:00:00Z", None, NOW.timestamp() - 300 * DAY),
    ]
    rows = list(csv.reader(io.StringIO(idle_csv(seats, now=NOW.timestamp()).decode())))
    assert rows[0][:3] == ["email", "name", "seat_uid"] and len(rows) == 3
    assert rows[1][1] == "'=HYPERLINK(1)" and rows[1][3] == "never" and rows[1][5] == "40"
    assert rows[2][1] == "Bob, Jr." and rows[2][5] == "300"
    with_updates = idle_csv(seats, now=NOW.timestamp(), extra={"s1": "2026-11-29T12:00:00Z"}).decode()
    assert with_updates.splitlines()[1].endswith(",2026-11-29T12:00:00Z")


def test_parse_idle_days_and_reason() -> None:
    """`idle`, `idle 45`, `idle 45d --reason x`; anything else is a clear error."""
    assert parse("idle").days is None and parse("idle").action == "idle"
    cmd = parse("idle 45d --reason monthly sweep")
    assert (cmd.days, cmd.reason) == (45, "monthly sweep")
    for bad in ("idle 0", "idle -3", "idle 99999", "idle soon", "idle 3 4"):
        with pytest.raises(ParseError, match="number of days"):
            parse(bad)


def test_settings_read_idle_days_and_exclusions() -> None:
    """SEATBOT_IDLE_EXCLUDE is a comma list of emails and @domains; anything else stops start-up."""
    settings = load_settings(_env_file=None, seatbot_idle_days="45", seatbot_idle_exclude="a@x.io, @y.io")
    assert settings.seatbot_idle_days == 45 and settings.seatbot_idle_exclude == ("a@x.io", "@y.io")
    with pytest.raises(ConfigError, match="SEATBOT_IDLE_EXCLUDE"):
        load_settings(_env_file=None, seatbot_idle_exclude="ybox")
