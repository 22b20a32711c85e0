"""Nobody but an admin spends the room admins need (issue 18 §1): a flood of Workflow Builder runs,
started by a non-admin with random seat UIDs, plus a directory sync and an idle sweep taking all they
may, and an admin's revoke of a known seat still goes through within seconds. The real app, real
Redis, the sandbox with 6,000 users (so each unknown UID would cost a scan of 50 pages)."""

from __future__ import annotations

import secrets
import time

import redis.asyncio as aredis

from bot.cloudflare.budget import RateBudget
from bot.devtools.sandbox import Sandbox
from bot.errors import BudgetExhausted
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ALICE, all_text, card_for, confirm, running
from tests.support.workflow import start_step


async def drain(budget: RateBudget, lane: str) -> int:
    """Take slots on `lane` until it has no room; how many it took."""
    taken = 0
    while True:
        try:
            await budget.take(lane, max_wait=0)  # type: ignore[arg-type]
        except BudgetExhausted:
            return taken
        taken += 1


async def test_workflow_flood_and_background_lanes_leave_an_admins_revoke_its_room(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    sandbox.synthetic.resize(6_000)
    async with running(
        slack,
        sandbox,
        redis_url,
        cloudflare_rate_limit=100,  # 100 per window: share 0.5 leaves admins at least 50
        cloudflare_budget_wait_seconds=1,
        seatbot_directory_refresh_seconds=0,  # the directory off: every unknown UID would scan
    ) as bot:
        budget: RateBudget = bot.app.state.runtime.seats.budget
        # 26 runs by a non-admin who names another requester each time, each with a random seat UID
        runs = [
            await start_step(
                bot,
                target=f"{secrets.token_hex(4)}-aaaa-bbbb-cccc-{secrets.token_hex(6)}",
                requester=f"U{secrets.token_hex(4).upper()}",
            )
            for _ in range(26)
        ]
        await slack.wait_for(lambda: len(slack.completions) >= len(runs), timeout=20)
        assert all(method == "functions.completeError" for method, _ in slack.completions)
        spent_by_workflows = (await budget.usage()).used
        assert spent_by_workflows <= 50  # all workflows: 60 a minute, and never past the lane's cap
        taken = await drain(budget, "sync") + await drain(budget, "bulk") + await drain(budget, "workflow")
        assert (await budget.usage()).used == 50 and taken == 50 - spent_by_workflows

        started = time.monotonic()
        card = await card_for(bot, f"revoke {ALICE} --reason left")
        posts = await confirm(bot, card, 3)  # the card's note, the outcome, the card replaced
        assert "revoked: 1 of 1" in all_text(posts) and len(sandbox.patches) == 1
        assert time.monotonic() - started < 5


async def test_mistyped_uids_without_a_directory_never_take_the_admins_room(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Directory off, 6,000 users: each unknown UID scans up to 50 pages, on the background share of
    the budget; four typos fill only that share (they said why), and a revoke still goes through."""
    sandbox.synthetic.resize(6_000)
    async with running(
        slack,
        sandbox,
        redis_url,
        cloudflare_rate_limit=100,
        cloudflare_budget_wait_seconds=1,
        seatbot_directory_refresh_seconds=0,
    ) as bot:
        budget: RateBudget = bot.app.state.runtime.seats.budget
        answers = [
            all_text(
                await card_for(bot, f"status {secrets.token_hex(4)}-aaaa-bbbb-cccc-{secrets.token_hex(6)}")
            )
            for _ in range(4)
        ]
        assert "look-up could not be completed" in answers[0]
        assert all("seat-UID scans and workflow runs may use (50 of 100" in text for text in answers[1:])
        assert (await budget.usage()).used == 50
        started = time.monotonic()
        card = await card_for(bot, f"revoke {ALICE} --reason left")
        posts = await confirm(bot, card, 3)
        assert "revoked: 1 of 1" in all_text(posts) and time.monotonic() - started < 5
