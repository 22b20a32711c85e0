"""`/seat idle`, the sweep and the App Home end to end: signed requests, real Redis, fake Slack, sandbox."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aredis

from bot.devtools.demo_idle import user_at
from bot.devtools.sandbox import Sandbox
from bot.state.audit import STREAM
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ADMIN2,
    CHANNEL,
    OUTSIDER,
    SlackClient,
    all_text,
    button,
    card_for,
    home_opened_body,
    running,
    sign,
)

NOW = datetime.now(UTC)


def add_idle(sandbox: Sandbox, count: int, *, days: int = 90, prefix: str = "idle") -> list[dict[str, Any]]:
    users = [
        sandbox.add_user(
            user_at(
                f"{prefix}{n:05d}@example.com",
                last_login=NOW - timedelta(days=days + n % 7),
                created=NOW - timedelta(days=500),
            )
        )
        for n in range(count)
    ]
    return users


def csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


async def audit_events(redis_client: aredis.Redis) -> list[dict[str, Any]]:
    rows = await redis_client.xrange(STREAM)
    return [json.loads((data or {})[b"json"]) for _, data in rows or []]


async def confirm(bot: SlackClient, message: dict[str, Any], *, user: str = ADMIN) -> list[dict[str, Any]]:
    response, key = await bot.click("seat_confirm", button(message, "seat_confirm")["value"], user=user)
    assert response.status_code == 200
    return await wait_outcome(bot.slack, key)


async def wait_outcome(slack: FakeSlack, key: str, timeout: float = 30) -> list[dict[str, Any]]:
    await slack.wait_for(
        lambda: any(r.get("response_type") == "in_channel" for r in slack.responses[key]), timeout
    )
    return slack.responses[key]


async def test_idle_report_lists_by_the_rule_and_uploads_the_csv(bot: SlackClient, sandbox: Sandbox) -> None:
    """`/seat idle`: counts, oldest first, exclusions honoured, the full list as a CSV in the channel."""
    add_idle(sandbox, 25)
    sandbox.add_user(user_at("never@example.com", last_login=None, created=NOW - timedelta(days=40)))
    sandbox.add_user(user_at("fresh@example.com", last_login=None, created=NOW - timedelta(days=10)))
    sandbox.add_user(
        user_at(
            "freed@example.com",
            last_login=NOW - timedelta(days=300),
            created=NOW - timedelta(days=400),
            access=False,
            gateway=False,
        )
    )
    message = await card_for(bot, "idle")
    assert message["text"] == "26 idle seats of 32 in use (no sign-in for 30+ days)"
    text = all_text(message)
    assert "The oldest 20" in text and "…and 6 more" in text and "freed@" not in text and "fresh@" not in text
    assert button(message, "seat_confirm")["text"]["text"] == "Free 26 idle seats"
    await bot.slack.wait_for(lambda: bot.slack.uploaded())
    (upload,) = bot.slack.uploaded()
    rows = csv_rows(upload["content"])
    assert upload["channel"] == CHANNEL and upload["filename"].startswith("idle-seats-30d-")
    assert (
        len(rows) == 26
        and rows[-1]["email"] == "never@example.com"
        and rows[-1]["last_successful_login"] == "never"
    )
    assert [m for m in bot.slack.methods() if m.startswith("files.")] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]


async def test_exclusions_are_never_listed(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """SEATBOT_IDLE_EXCLUDE: an email and a domain stay out of the report, the CSV and the sweep."""
    add_idle(sandbox, 3)
    add_idle(sandbox, 2, prefix="keep")
    sandbox.add_user(user_at("bot@service.example", last_login=None, created=NOW - timedelta(days=400)))
    async with running(
        slack, sandbox, redis_url, seatbot_idle_exclude=("keep00000@example.com", "@service.example")
    ) as bot:
        message = await card_for(bot, "idle")
        assert message["text"].startswith("4 idle seats") and "2 idle but excluded" in all_text(message)
        await slack.wait_for(lambda: slack.uploaded())
        emails = {r["email"] for r in csv_rows(slack.uploaded()[0]["content"])}
        assert emails == {
            "idle00000@example.com",
            "idle00001@example.com",
            "idle00002@example.com",
            "keep00001@example.com",
        }


async def test_sweep_frees_rechecks_and_records_each_seat(
    bot: SlackClient, sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """Confirm: someone who signed in since is skipped and named; the rest are freed, audited, in a CSV."""
    users = add_idle(sandbox, 6)
    message = await card_for(bot, "idle 30 --reason monthly sweep")
    users[2]["last_successful_login"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")  # signed in after the report
    synced = await card_for(bot, "sync")  # the directory learns it (as its periodic refresh would)
    assert "Directory synced" in synced["text"], synced["text"]
    before = len(sandbox.patches)
    responses = await confirm(bot, message)
    outcome = next(r for r in responses if r.get("response_type") == "in_channel")
    assert outcome["text"] == "Idle sweep: 5 freed, 1 skipped, 0 failed"
    assert "signed in since the report: 1" in all_text(outcome) and "idle00002@example.com" in json.dumps(
        outcome
    )
    assert len(sandbox.patches) == before + 1
    assert [u["access_seat"] for u in users] == [False, False, True, False, False, False]
    events = await audit_events(redis_client)
    per_seat = [e for e in events if e.get("sweep") is True]
    assert sorted(e["event"] for e in per_seat) == ["skipped"] + ["succeeded"] * 5
    assert all(e["reason"] == "monthly sweep" and e["user"] == ADMIN for e in per_seat)
    await bot.slack.wait_for(lambda: len(bot.slack.uploaded()) == 2)
    freed = csv_rows(bot.slack.uploaded()[1]["content"])
    assert len(freed) == 5 and all(r["updated_at"] for r in freed)


async def test_a_5000_seat_sweep_patches_in_chunks_of_50_and_audits_every_seat(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """5,000 idle seats: 100 PATCH requests of 50, one audit event per seat, progress shown."""
    users = add_idle(sandbox, 5_000)
    async with running(slack, sandbox, redis_url, cloudflare_max_pages=100) as bot:
        message = await card_for(bot, "idle")
        assert message["text"].startswith("5,000 idle seats")
        sandbox.requests.clear()
        _response, key = await bot.click("seat_confirm", button(message, "seat_confirm")["value"])
        responses = await wait_outcome(slack, key, timeout=60)
    patches = [r for r in sandbox.requests if r.method == "PATCH"]
    assert len(patches) == 100 and {len(p.body) for p in patches} == {50}
    assert len({item["seat_uid"] for p in patches for item in p.body}) == 5_000
    assert all(not u["access_seat"] and not u["gateway_seat"] for u in users)
    assert any("Freeing 5,000 idle seats" in r["text"] for r in responses)
    outcome = next(r for r in responses if r.get("response_type") == "in_channel")
    assert outcome["text"] == "Idle sweep: 5,000 freed, 0 skipped, 0 failed"
    events = await audit_events(redis_client)
    succeeded = [e for e in events if e["event"] == "succeeded" and e.get("sweep") is True]
    assert len(succeeded) == 5_000 and len({e["seat_uid"] for e in succeeded}) == 5_000


async def test_two_person_rule_and_exactly_once(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """With the two-person rule the requester cannot confirm; two admins clicking at once act once."""
    add_idle(sandbox, 4)
    async with running(slack, sandbox, redis_url, seatbot_two_person=True) as bot:
        _response, key = await bot.command("idle")
        (message,) = await slack.wait_responses(key, 1)
        assert message["response_type"] == "in_channel"
        value = button(message, "seat_confirm")["value"]
        _, own = await bot.click("seat_confirm", value, user=ADMIN)
        (refusal,) = await slack.wait_responses(own, 1)
        assert "another admin" in refusal["text"]
        _, stranger = await bot.click("seat_confirm", value, user=OUTSIDER)
        assert "Only seat-bot admins" in (await slack.wait_responses(stranger, 1))[0]["text"]
        sandbox.requests.clear()
        (_, k1), (_, k2) = await asyncio.gather(
            bot.click("seat_confirm", value, user=ADMIN2), bot.click("seat_confirm", value, user=ADMIN2)
        )

        def said() -> list[str]:
            return [str(r.get("text")) for r in slack.responses[k1] + slack.responses[k2]]

        # both clicks have had their last word (the sweep's outcome, the other's refusal): no sleep
        await slack.wait_for(
            lambda: (
                any("Idle sweep: 4 freed" in t for t in said())
                and any("already handled" in t or "is under way" in t or "has finished" in t for t in said())
            ),
            10,
        )
    assert len([r for r in sandbox.requests if r.method == "PATCH"]) == 1
    texts = [r["text"] for r in slack.responses[k1] + slack.responses[k2]]
    assert sum("Idle sweep: 4 freed" in t for t in texts) == 1
    # the other click hears the card was handled, or that the sweep is under way: never "click again"
    assert any("already handled" in t or "is under way" in t or "has finished" in t for t in texts)
    assert not any("click again" in t for t in texts)


async def test_reason_rule_and_cancel(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """With a required reason the report has no button until one is given; Cancel frees nothing."""
    users = add_idle(sandbox, 2)
    async with running(slack, sandbox, redis_url, seatbot_require_reason=True) as bot:
        bare = await card_for(bot, "idle")
        assert not [b for b in bare["blocks"] if b["type"] == "actions"] and "--reason" in all_text(bare)
        message = await card_for(bot, "idle --reason cleanup")
        _, key = await bot.click("seat_cancel", button(message, "seat_cancel")["value"])
        (cancelled,) = await slack.wait_responses(key, 1)
        assert "Cancelled" in cancelled["text"]
        _, again = await bot.click("seat_confirm", button(message, "seat_confirm")["value"])
        assert "expired" in (await slack.wait_responses(again, 1))[0]["text"]
    assert all(u["access_seat"] for u in users) and not sandbox.patches


async def test_a_non_admin_gets_no_report_and_a_refused_upload_is_explained(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """Non-admins are refused; when Slack refuses the file the requester is told how to fix it."""
    add_idle(sandbox, 2)
    refused = await card_for(bot, "idle", user=OUTSIDER)
    assert "Only seat-bot admins" in refused["text"] and not bot.slack.files
    bot.slack.file_error = "not_in_channel"
    _response, key = await bot.command("idle")
    report, note = await bot.slack.wait_responses(key, 2)
    assert report["text"].startswith("2 idle seats") and "/invite @seatbot" in note["text"]


async def open_home(bot: SlackClient, user: str) -> dict[str, Any]:
    body = home_opened_body(user, event_id=f"Ev{user}")
    headers = {**sign(body), "Content-Type": "application/json"}
    assert (await bot.post(body, headers)).status_code == 200
    await bot.slack.wait_for(lambda: any(v["user_id"] == user for v in bot.slack.views))
    return next(v["view"] for v in bot.slack.views if v["user_id"] == user)


async def test_app_home_for_an_admin_and_for_anyone_else(bot: SlackClient, sandbox: Sandbox) -> None:
    """app_home_opened → views.publish: counts and recent events for admins; what and who for others."""
    add_idle(sandbox, 3)
    await card_for(bot, "status alice@example.com")
    await card_for(bot, "idle --reason x")
    view = await open_home(bot, ADMIN)
    text = all_text(view)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert "*8* seats in use of *8* users" in text and "*3* idle seats" in text and "requested" in text
    other = all_text(await open_home(bot, OUTSIDER))
    assert "Only admins" in other and "seats in use" not in other and f"<@{ADMIN}>" in other
