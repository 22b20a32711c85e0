"""The token's shared rate budget (real Redis) and the sandbox that enforces Cloudflare's limit."""

from __future__ import annotations

import tracemalloc
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from bot.app.workflow import WorkflowLimits
from bot.cloudflare.budget import RateBudget, parse_ratelimit
from bot.cloudflare.client import CloudflareClient
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.devtools.synthetic import synthetic_email, synthetic_uid
from bot.domain.models import SeatUpdate
from bot.domain.spend import charged
from bot.errors import BudgetExhausted, RateLimited

USERS = f"/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/users"
AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}"}


class Clock:
    """One fake time for the sandbox, the budget and the client: sleeping moves it forward."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client_for(sandbox: Sandbox, clock: Clock, budget: RateBudget | None, **kw: Any) -> CloudflareClient:
    return CloudflareClient(
        account_id=DEMO_ACCOUNT_ID,
        auth_headers=AUTH,
        base_url=sandbox.base_url,
        transport=sandbox.transport(),
        sleep=clock.sleep,
        clock=clock,
        budget=budget,
        **kw,
    )


async def test_sandbox_enforces_a_rolling_window_with_cloudflares_429() -> None:
    """Past the limit: 429, Retry-After, the failure envelope and Ratelimit headers; later, room again."""
    clock = Clock()
    box = Sandbox(rate_limit=3, rate_window=300, rate_clock=clock)
    async with httpx.AsyncClient(transport=box.transport(), base_url="http://sandbox.test") as http:
        ok = [await http.get(USERS, headers=AUTH) for _ in range(3)]
        assert [r.status_code for r in ok] == [200, 200, 200]
        assert parse_ratelimit(ok[-1].headers) == (0, 300, 3)
        clock.now += 100
        over = await http.get(USERS, headers=AUTH)
        assert over.status_code == 429
        assert over.headers["retry-after"] == "200"
        body = over.json()
        assert body["success"] is False and body["errors"][0]["code"] == 971
        clock.now += 200
        assert (await http.get(USERS, headers=AUTH)).status_code == 200
    assert box.rejected == 1 and box.rate_peak == 3


async def test_sandbox_holds_100k_users_cheaply() -> None:
    """100,000 synthetic users cost almost nothing until listed, changed or removed."""
    tracemalloc.start()
    box = Sandbox(synthetic=100_000)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size < 500_000
    assert box.user_count == 100_005
    async with httpx.AsyncClient(transport=box.transport(), base_url="http://sandbox.test") as http:
        last = (await http.get(USERS, params={"page": 1001, "per_page": 100}, headers=AUTH)).json()
        assert last["result_info"]["total_pages"] == 1001
        assert last["result"][-1]["email"] == synthetic_email(100_000)
        found = await http.get(USERS, params={"email": synthetic_email(77)}, headers=AUTH)
        assert [u["seat_uid"] for u in found.json()["result"]] == [synthetic_uid(77)]
    box.remove_user(synthetic_uid(3))
    assert box.find_user(synthetic_uid(3)) is None
    assert box.synthetic.slice(0, 3)[2]["email"] == synthetic_email(4)
    async with client_for(box, Clock(), None) as cf:
        (seat,) = await cf.update_seats([SeatUpdate(seat_uid=synthetic_uid(50_000))])
        assert seat.removed
        (user,) = await cf.find_users(email=synthetic_email(50_000))
        assert user.access_seat is False


async def test_two_processes_share_one_window(redis_client: aredis.Redis) -> None:
    """Two budgets on one Redis count together; the sync lane stops at its share, people don't."""
    clock = Clock()
    a = RateBudget(redis_client, limit=5, window=60, share=0.4, margin=0, clock=clock, sleep=clock.sleep)
    b = RateBudget(redis_client, limit=5, window=60, share=0.4, margin=0, clock=clock, sleep=clock.sleep)
    assert await a.take("sync", max_wait=0) == 0
    assert await b.take("sync", max_wait=0) == 0
    with pytest.raises(BudgetExhausted):
        await a.take("sync", max_wait=0)  # 2 of 5 used: the sync's share (40 %) is spent
    for budget in (a, b, a):
        await budget.take("interactive", max_wait=0)  # people still get the reserve
    with pytest.raises(BudgetExhausted, match="more room in 60 s"):
        await b.take("interactive", max_wait=0)
    waited = await b.take("interactive", max_wait=120)  # waits for the window to slide
    assert 55 <= waited <= 65
    assert (await a.usage()).used == 1  # the five taken at once aged out together


async def test_client_never_draws_a_429_from_a_sandbox_enforcing_the_limit(
    redis_client: aredis.Redis,
) -> None:
    """With the budget, 40 calls against a 10-per-window Cloudflare wait instead of being refused."""
    clock = Clock()
    box = Sandbox(rate_limit=10, rate_window=60, rate_clock=clock)
    budget = RateBudget(redis_client, limit=10, window=60, clock=clock, sleep=clock.sleep)
    async with client_for(box, clock, budget, budget_wait=120) as cf:
        for _ in range(40):
            await cf.ping()
    assert box.rejected == 0
    assert len(box.requests) == 40
    assert clock.now - 1_000_000 >= 3 * 60  # it really waited for the window


async def test_ratelimit_headers_slow_the_client_down_before_a_429(redis_client: aredis.Redis) -> None:
    """A token whose real quota is lower than configured: Cloudflare's headers keep us under it."""
    clock = Clock()
    box = Sandbox(rate_limit=8, rate_window=60, rate_clock=clock)
    budget = RateBudget(redis_client, limit=1200, window=60, clock=clock, sleep=clock.sleep)
    async with client_for(box, clock, budget, budget_wait=120) as cf:
        for _ in range(20):
            await cf.ping()
    assert box.rejected == 0
    assert budget.limit == 8  # learnt from Ratelimit-Policy


async def test_a_429_pauses_every_process(redis_client: aredis.Redis) -> None:
    """Retry-After from one process's 429 makes the others wait too (other tools share the token)."""
    clock = Clock()
    box = Sandbox()
    box.inject(status=429, retry_after="30", code=971, message="Please wait")
    a = RateBudget(redis_client, clock=clock, sleep=clock.sleep)
    b = RateBudget(redis_client, clock=clock, sleep=clock.sleep)
    async with client_for(box, clock, a, max_attempts=1) as cf:
        with pytest.raises(RateLimited):
            await cf.ping()
    with pytest.raises(BudgetExhausted, match="more room in 30 s"):
        await b.take("interactive", max_wait=5)
    assert await b.take("interactive", max_wait=60) == 30


async def test_workflow_quotas_bound_a_runner_a_workflow_and_all_workflows(
    redis_client: aredis.Redis,
) -> None:
    """Per minute: one runner 10, one workflow (channel) 15, all workflows 22; the next minute has room
    again, and an admin's interactive request outside the charge is never counted against them."""
    clock = Clock()
    clock.now = 1_000_020.0  # the start of a minute
    budget = RateBudget(redis_client, limit=1200, clock=clock, sleep=clock.sleep)
    limits = WorkflowLimits(total=22, per_workflow=15, per_runner=10)

    async def spend(runner: str, channel: str, tries: int) -> tuple[int, str]:
        with charged("workflow", *limits.quotas(channel=channel, runner=runner)):
            for done in range(tries):
                try:
                    await budget.take(max_wait=0)
                except BudgetExhausted as exc:
                    return done, str(exc)
        return tries, ""

    assert await spend("UMALLORY", "C1", 20) == (10, _refusal("workflows run by this requester", 10))
    assert await spend("UOTHER", "C1", 20) == (5, _refusal("workflows posting in this channel", 15))
    assert await spend("UTHIRD", "C2", 20) == (7, _refusal("all workflows", 22))
    assert await budget.take(max_wait=0) == 0  # interactive: not a workflow's quota
    clock.now += 60
    assert (await spend("UMALLORY", "C1", 3))[0] == 3


def _refusal(what: str, per_minute: int) -> str:
    return (
        f"the Cloudflare budget for {what} ({per_minute} requests per minute) is used up; more room in 60 s"
    )


async def test_workflow_lane_never_takes_the_interactive_reserve(redis_client: aredis.Redis) -> None:
    """Limit 20, share 0.5: workflows, syncs and sweeps together fill 10 slots; admins keep the other 10."""
    clock = Clock()
    budget = RateBudget(redis_client, limit=20, share=0.5, clock=clock, sleep=clock.sleep)
    limits = WorkflowLimits(total=1000, per_workflow=1000, per_runner=1000)
    taken = 0
    with charged("workflow", *limits.quotas(channel="C1", runner="U1")):
        for _ in range(30):
            try:
                await budget.take("interactive", max_wait=0)  # what the client asks for inside a run
                taken += 1
            except BudgetExhausted:
                break
    assert taken == 10
    for lane in ("sync", "bulk", "workflow"):
        with pytest.raises(BudgetExhausted):
            await budget.take(lane, max_wait=0)
    for _ in range(10):
        assert await budget.take("interactive", max_wait=0) == 0
    assert (await budget.usage()).used == 20
