"""Issue 17 §4: a pause Cloudflare asks for is capped at one window, named, and shown (chaos)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aredis

from bot.cloudflare.budget import RateBudget
from bot.cloudflare.client import CloudflareClient
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.errors import BudgetExhausted, RateLimited
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ALICE, SlackClient, stack_env
from tests.support.servers import run_bot, sandbox_process

pytestmark = pytest.mark.chaos
DAY = "86400"


class Clock:
    """One fake time for the budget and the client: sleeping moves it forward."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class DayLongRatelimit(httpx.AsyncBaseTransport):
    """The sandbox, but its first answer carries `Ratelimit: r=0;t=86400` (an odd or hostile header)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.sent += 1
        if self.sent == 1:
            response.headers["Ratelimit"] = f'"default";r=0;t={DAY}'
        return response


def client(sandbox: Sandbox, clock: Clock, budget: RateBudget, **kw: object) -> CloudflareClient:
    return CloudflareClient(
        account_id=DEMO_ACCOUNT_ID,
        auth_headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        base_url=sandbox.base_url,
        transport=kw.pop("transport", None) or sandbox.transport(),  # type: ignore[arg-type]
        sleep=clock.sleep,
        clock=clock,
        budget=budget,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_day_long_retry_after_pauses_five_minutes_and_names_cloudflare(
    redis_client: aredis.Redis,
) -> None:
    """One 429 with Retry-After: 86400 stops every process for one window at most, and says who asked."""
    clock = Clock()
    box = Sandbox()
    box.inject(status=429, retry_after=DAY, code=971, message="Please wait")
    a = RateBudget(redis_client, clock=clock, sleep=clock.sleep)
    other = RateBudget(redis_client, clock=clock, sleep=clock.sleep)  # another process
    async with client(box, clock, a, max_attempts=1) as cf:
        with pytest.raises(RateLimited):
            await cf.ping()
    with pytest.raises(BudgetExhausted) as refused:
        await other.take("interactive", max_wait=15)
    text = str(refused.value)
    assert "Cloudflare asked the bot to pause (Retry-After: 86400 s, honoured for 300 s at most)" in text
    assert "until 1970-01-12 13:51:40 UTC" in text and "rate budget" not in text
    pause = await other.pause()
    assert pause is not None and pause.until - clock.now == 300
    assert await other.take("interactive", max_wait=400) == 300  # then it goes on


async def test_a_day_long_ratelimit_header_cannot_stall_the_directory_sync(
    redis_client: aredis.Redis,
) -> None:
    """`Ratelimit: r=0;t=86400` on one answer: the sync lane's listing goes on after one window."""
    clock = Clock()
    box = Sandbox()
    budget = RateBudget(redis_client, clock=clock, sleep=clock.sleep)
    async with client(box, clock, budget, transport=DayLongRatelimit(box.transport())) as cf:
        await cf.list_page(1, lane="sync")
        started = clock.now
        await cf.list_page(2, lane="sync")
    assert clock.now - started <= 300


async def test_refusal_healthz_and_check_name_the_pause(
    bot: SlackClient, sandbox: Sandbox, slack: FakeSlack, redis_url: str, tmp_path: Path
) -> None:
    """Through the real app: the refusal says Cloudflare asked, until when; /healthz and `check` show it."""
    sandbox.inject(status=429, retry_after=DAY, code=971, message="Please wait")
    response, key = await bot.command(f"revoke {ALICE}")
    assert response.status_code == 200
    await slack.wait_responses(key, 1, timeout=10)  # the look-up met the 429
    response, key = await bot.command(f"revoke {ALICE}")
    (refusal,) = await slack.wait_responses(key, 1, timeout=30)
    assert "Cloudflare asked the bot to pause (Retry-After: 86400 s" in refusal["text"]
    assert "rate budget (1200 requests" not in refusal["text"]
    health = (await bot.http.get("/healthz")).json()
    assert health["cloudflare_pause"]["source"] == "Retry-After"
    assert health["cloudflare_pause"]["asked_seconds"] == 86400
    assert health["cloudflare_pause"]["honoured_seconds"] == 300
    with sandbox_process(tmp_path) as port:
        env = stack_env(slack_api_url=slack.api_url, redis_url=redis_url, cf_port=port)
        checked = await asyncio.to_thread(run_bot, "check", cwd=tmp_path, env=env, stdin="")
    (line,) = [line for line in checked.stdout.splitlines() if " cloudflare:" in line]
    assert line.startswith("WARN cloudflare: users list of account"), checked.stdout
    assert "Cloudflare asked the bot to pause (Retry-After: 86400 s, honoured for 300 s at most)" in line


async def test_a_pause_for_the_sync_lane_never_hides_one_for_every_lane(redis_client: aredis.Redis) -> None:
    """A 429's Retry-After, then a header leaving only the interactive reserve: a revoke is still told
    about the 429's pause, the one it waits for."""
    clock = Clock()
    budget = RateBudget(redis_client, limit=10, share=0.5, clock=clock, sleep=clock.sleep)
    await budget.observe({}, retry_after=120)
    await budget.observe({"ratelimit": '"default";r=4;t=60'})  # 4 left of 10: only people's part
    pause = await budget.pause()
    assert pause is not None and (pause.lane, pause.source, pause.asked) == ("all", "Retry-After", 120)
    with pytest.raises(BudgetExhausted, match=r"Cloudflare asked the bot to pause \(Retry-After: 120 s\)"):
        await budget.take("interactive", max_wait=5)
