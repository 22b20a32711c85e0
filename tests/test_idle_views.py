"""Idle report, sweep outcome and App Home rendered as data: Block Kit limits at 10 and 100,000 users."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.app.home import Home, HomeOverview, ScheduledItem
from bot.app.sweep import IdleFlow
from bot.cloudflare.budget import Lane
from bot.domain.idle import DAY, IdleReport, IdleSeat, SourceInfo, SweepOutcome, SweepProgress
from bot.domain.models import AccessUser, Pending, Seat, SeatUpdate
from bot.domain.policy import Authorizer, Policy
from bot.slack import idle_blocks
from bot.slack.home import home_view
from bot.state.sweeps import Run, SweepList

NOW = 1_795_000_000.0
EVIL = "<!channel> & <@U123|x>"


def check_blocks(blocks: list[dict[str, Any]], *, max_blocks: int) -> None:
    """Slack's documented limits: block count, text lengths, button texts, values and dialogs."""
    assert 0 < len(blocks) <= max_blocks, len(blocks)
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(0 < len(e["text"]) <= 3000 for e in block["elements"])
        buttons = block.get("elements", []) if block["type"] == "actions" else []
        if "accessory" in block:
            buttons = [block["accessory"]]
        for button in buttons:
            assert len(button["text"]["text"]) <= 75 and len(button["value"]) <= 2000
            dialog = button.get("confirm")
            if dialog:
                assert len(dialog["title"]["text"]) <= 100 and len(dialog["text"]["text"]) <= 300
    assert "<!channel>" not in json.dumps(blocks), "user-supplied text must be escaped"


def seats(count: int) -> tuple[IdleSeat, ...]:
    return tuple(
        IdleSeat(
            f"{n:08x}-0000-4000-8000-000000000000", f"user{n}@example.com", EVIL, None, None, NOW - 90 * DAY
        )
        for n in range(count)
    )


def pending(count: int, **kw: Any) -> Pending:
    return Pending("a" * 32, "UREQ", "C1", [], EVIL, NOW, NOW + 600, sweep=count, **kw)


def test_report_shows_the_oldest_20_and_stays_small_at_100000_idle_seats() -> None:
    """The report lists 20 lines whatever the count, with the danger button and its dialog."""
    for count in (3, 100_000):
        report = IdleReport(
            "UREQ",
            "C1",
            30,
            NOW,
            count + 10,
            count + 5,
            2,
            seats(count),
            SourceInfo("scan", NOW),
            pending(count),
        )
        message = idle_blocks.idle_report(report)
        check_blocks(message["blocks"], max_blocks=50)
        text = json.dumps(message)
        assert text.count("user") >= min(count, 20) and "user20@example.com" not in text
        (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
        free = actions["elements"][0]
        assert free["style"] == "danger" and free["confirm"]["style"] == "danger"
        assert free["text"]["text"] == f"Free {count:,} idle seats" and free["action_id"] == "seat_confirm"
        assert free["value"] == "a" * 32


def test_report_without_a_button_says_why() -> None:
    """No pending (reason missing): no actions block, and the reason is given."""
    report = IdleReport(
        "UREQ",
        "C1",
        30,
        NOW,
        10,
        5,
        0,
        seats(2),
        SourceInfo("directory", NOW - 120),
        no_button="A reason is required",
    )
    message = idle_blocks.idle_report(report)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert "A reason is required" in json.dumps(message) and "synced 2 min ago" in json.dumps(message)


def test_outcome_at_5000_failures_and_skips_stays_within_limits() -> None:
    """Failures are listed (capped), skips summarised by reason, counts exact."""
    many = seats(5_000)
    outcome = SweepOutcome(
        pending(10_000),
        "UCONF",
        NOW,
        freed=many[:10],
        updated_at={},
        skipped=tuple((s, "signed in since the report") for s in many[:2_500]),
        failed=tuple((s, EVIL) for s in many[2_500:]),
    )
    message = idle_blocks.sweep_outcome(outcome)
    check_blocks(message["blocks"], max_blocks=50)
    assert message["text"] == "Idle sweep: 10 freed, 2,500 skipped, 2,500 failed"
    assert "signed in since the report: 2,500" in json.dumps(message)
    assert message["response_type"] == "in_channel"
    progress = idle_blocks.sweep_progress(SweepProgress(pending(5_000), 5_000, 2_500, 61.0))
    assert "2,500 of 5,000" in progress["text"] and "61 s left" in progress["text"]


class ListSource:
    def __init__(self, users: list[AccessUser]) -> None:
        self.users = users
        self.scans = 0

    async def scan(self, each: Callable[[Sequence[AccessUser]], None]) -> SourceInfo:
        self.scans += 1
        for start in range(0, len(self.users), 1000):
            each(self.users[start : start + 1000])
        return SourceInfo("directory", NOW - 300)

    async def current(self, seat_uids: Sequence[str]) -> dict[str, AccessUser]:
        return {}

    async def freed(self, seat_uids: Sequence[str]) -> None:
        raise AssertionError("the Home must not free seats")


class Nobody:
    async def email_of(self, user_id: str) -> str | None:
        return None

    async def members_of(self, group_id: str) -> frozenset[str]:
        return frozenset()


class Events:
    async def record(self, event: Any, **fields: Any) -> bool:
        return True

    async def record_many(self, events: Any) -> bool:
        return True

    async def recent(self, count: int) -> list[dict[str, Any]]:
        return [
            {"event": "succeeded", "at": NOW, "user": "UADMIN", "email": EVIL, "reason": "x" * 900}
        ] * count


class NoWrites:
    """The Home only reads: any write would fail the test."""

    async def update_seats(self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive") -> list[Seat]:
        raise AssertionError("the Home must not change seats")

    async def put(self, pending: Pending, *, ttl: int) -> None:
        raise AssertionError("the Home must not make cards")


class NoSweeps:
    async def put(self, pending_id: str, sweep: SweepList, *, ttl: int) -> None:
        raise AssertionError("the Home must not make sweeps")

    async def get(self, pending_id: str) -> SweepList | None:
        raise AssertionError("the Home must not run sweeps")

    async def start(
        self, pending_id: str, plan: SweepList, rows: list[str], *, token: str, until: float
    ) -> bool:
        raise AssertionError("the Home must not run sweeps")

    async def acquire(self, pending_id: str, *, token: str, now: float, until: float) -> tuple[str, float]:
        raise AssertionError("the Home must not run sweeps")

    async def write(
        self,
        pending_id: str,
        *,
        token: str,
        fields: Mapping[str, str | int | float],
        rows: Sequence[str] = (),
    ) -> bool:
        raise AssertionError("the Home must not run sweeps")

    async def run(self, pending_id: str) -> Run | None:
        raise AssertionError("the Home must not run sweeps")

    async def rows(self, pending_id: str) -> list[str]:
        raise AssertionError("the Home must not run sweeps")


def read_only(source: ListSource, policy: Policy) -> IdleFlow:
    return IdleFlow(
        source=source,
        seats=NoWrites(),
        pendings=NoWrites(),
        sweeps=NoSweeps(),
        audit=Events(),
        policy=policy,
        clock=lambda: NOW,
    )


def account(count: int) -> list[AccessUser]:
    """`count` users, one in three idle for 90 days, one in ten without a seat."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 90 * DAY))
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - DAY))
    return [
        AccessUser.model_construct(
            email=f"u{n}@example.com",
            seat_uid=f"seat-{n}",
            access_seat=n % 10 != 0,
            gateway_seat=False,
            last_successful_login=stamp if n % 3 == 0 else recent,
        )
        for n in range(count)
    ]


async def test_app_home_for_10_and_100000_users_validates() -> None:
    """The admin's Home at 10 and 100,000 users: ≤ 100 blocks, texts within limits, counts right."""
    policy = Policy(admins=frozenset({"UADMIN"}), admin_groups=("S0GROUP",))
    for count in (10, 100_000):
        source = ListSource(account(count))
        idle = read_only(source, policy)
        home = Home(idle=idle, audit=Events(), authorizer=Authorizer(policy, Nobody()), clock=lambda: NOW)
        overview = await home.overview("UADMIN")
        assert overview.counts is not None
        in_use = sum(1 for n in range(count) if n % 10)
        idle_count = sum(1 for n in range(count) if n % 10 and n % 3 == 0)
        assert (overview.counts.users, overview.counts.in_use, overview.counts.idle) == (
            count,
            in_use,
            idle_count,
        )
        scheduled = tuple(ScheduledItem(f"id{n}", EVIL, NOW + n, "UADMIN", EVIL) for n in range(count // 100))
        view = home_view(HomeOverview(**{**overview.__dict__, "scheduled": scheduled}))
        assert view["type"] == "home"
        check_blocks(view["blocks"], max_blocks=100)
        text = json.dumps(view)
        assert f"*{in_use:,}* seats in use of *{count:,}* users" in text and f"*{idle_count:,}* idle" in text
        await home.overview("UADMIN")
        assert source.scans == 1, "a second open within the cache period costs nothing upstream"


async def test_app_home_for_a_non_admin_shows_what_the_bot_is_and_who_runs_it() -> None:
    """A non-admin sees the bot's purpose and its admins, never the counts or the audit trail."""
    policy = Policy(admins=frozenset({"UADMIN"}))
    source = ListSource(account(10))
    idle = read_only(source, policy)
    home = Home(idle=idle, audit=Events(), authorizer=Authorizer(policy, Nobody()))
    view = home_view(await home.overview("USOMEONE"))
    text = json.dumps(view)
    assert "<@UADMIN>" in text and "Only admins" in text
    assert "seats in use" not in text and "succeeded" not in text and source.scans == 0
