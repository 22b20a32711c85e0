"""The periodic idle report: its schedule, what it posts, and its button giving each admin a card."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aredis

from bot.app.idle_report import JOB, PeriodicReport
from bot.cloudflare.client import CloudflareClient
from bot.config import load_settings
from bot.devtools.demo_idle import user_at
from bot.devtools.sandbox import Sandbox
from bot.domain.idle import IdleReport
from bot.domain.policy import Policy
from bot.errors import ConfigError
from bot.slack import replies
from tests.support.fake_slack import FakeSlack
from tests.support.flow import idle_flow
from tests.support.harness import ADMIN, OUTSIDER, SlackClient, all_text, button, running

NOW = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)


class RecordingRunner:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    async def enqueue_at(self, name: str, *, key: str, at: float, **kwargs: Any) -> bool:
        if key in self.jobs:  # the job runner's unique keys: one job per run time
            return False
        self.jobs[key] = {"name": name, "at": at, **kwargs}
        return True


def test_the_cron_setting_is_checked() -> None:
    """SEATBOT_IDLE_REPORT_CRON must be a five-field cron expression."""
    assert load_settings(_env_file=None).seatbot_idle_report_cron == "0 9 * * 1"
    for bad in ("weekly", "0 9 * *", "61 9 * * 1"):
        with pytest.raises(ConfigError, match="SEATBOT_IDLE_REPORT_CRON"):
            load_settings(_env_file=None, seatbot_idle_report_cron=bad)


async def test_a_run_posts_the_report_and_arms_the_next_once(
    sandbox: Sandbox, cf: CloudflareClient, redis_client: aredis.Redis
) -> None:
    """Mondays 09:00 UTC: arming twice queues one job; a run posts counts and a review button."""
    sandbox.add_user(
        user_at("gone@example.com", last_login=None, created=datetime.now(UTC) - timedelta(days=90))
    )
    idle = idle_flow(cf, redis_client, policy=Policy(admins=frozenset({ADMIN})))
    posted: list[IdleReport] = []

    async def post(report: IdleReport) -> None:
        posted.append(report)

    runner = RecordingRunner()
    periodic = PeriodicReport(
        idle=idle, channel="CREPORT", cron="0 9 * * 1", later=runner, post=post, clock=NOW.timestamp
    )
    monday = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp()
    assert periodic.next_run(NOW.timestamp()) == monday
    assert await periodic.arm() and not await periodic.arm()
    assert runner.jobs == {f"{JOB}:{int(monday)}": {"name": JOB, "at": monday}}
    await periodic.run()
    (report,) = posted
    assert report.channel == "CREPORT" and [s.email for s in report.idle] == ["gone@example.com"]
    message = replies.for_command(report).message
    review = button(message, "idle_review")
    assert review["text"]["text"] == "Free 1 idle seat…" and review["value"] == "30"
    assert "Periodic report" in all_text(message) and not [
        e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "seat_confirm"
    ]
    assert replies.for_command(report).upload is not None


async def test_the_review_button_gives_each_admin_a_card_of_their_own(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """A click on the report's button: an admin gets the usual card; anyone else is refused."""
    sandbox.add_user(
        user_at("gone@example.com", last_login=None, created=datetime.now(UTC) - timedelta(days=90))
    )
    _, key = await bot.click("idle_review", "30", user=ADMIN)
    (card,) = await bot.slack.wait_responses(key, 1)
    assert card["text"].startswith("1 idle seat of 6 in use") and card["response_type"] == "ephemeral"
    assert button(card, "seat_confirm")["style"] == "danger"
    _, other = await bot.click("idle_review", "30", user=OUTSIDER)
    (refused,) = await bot.slack.wait_responses(other, 1)
    assert "Only seat-bot admins" in refused["text"]


async def test_two_processes_post_the_report_once_and_arm_the_next(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Two web processes, one Redis: both arm the next run (one job), a due run is posted once."""
    sandbox.add_user(
        user_at("gone@example.com", last_login=None, created=datetime.now(UTC) - timedelta(days=90))
    )
    settings = {"seatbot_idle_report_channel": "CREPORT", "seatbot_idle_report_cron": "0 9 * * 1"}
    async with (
        running(slack, sandbox, redis_url, **settings) as one,
        running(slack, sandbox, redis_url, **settings) as two,
    ):
        runtimes = [one.app.state.runtime, two.app.state.runtime]
        for runtime in runtimes:
            await runtime.start_jobs()
        report = runtimes[0].idle_report
        monday = report.next_run(time.time())
        assert await runtimes[0].jobs.queue.job(f"{JOB}:{int(monday)}") is not None
        due = time.time() + 0.5  # as if Monday 09:00 were now: the same key from both processes
        queued = [await rt.jobs.enqueue_at(JOB, key=f"{JOB}:{int(due)}", at=due) for rt in runtimes]
        assert sorted(queued) == [False, True]
        await slack.wait_for(lambda: any(p.get("channel") == "CREPORT" for p in slack.posts), 15)
        await asyncio.sleep(1.5)
    posts = [p for p in slack.posts if p.get("channel") == "CREPORT"]
    assert len(posts) == 1 and posts[0]["text"].startswith("1 idle seat of 6 in use")
    assert "idle_review" in json.dumps(posts[0]) and "Periodic report" in json.dumps(posts[0])
    (csv_file,) = [f for f in slack.uploaded() if f["channel"] == "CREPORT"]
    assert b"gone@example.com" in csv_file["content"]
