"""Issue 17 §5: after "applied, answer lost" the fresh-try card shows the seats as they are now."""

from __future__ import annotations

import httpx
import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.slack.web import build_app
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ALICE, SlackClient, all_text, card_for, confirm, settings_for


class AnswerLost(httpx.AsyncBaseTransport):
    """The sandbox, but every PATCH's answer is lost on the way back: Cloudflare applied it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PATCH":
            await response.aread()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


async def test_the_fresh_try_card_shows_a_fresh_look_up_not_the_state_before_the_patch(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    settings = settings_for(slack, sandbox, redis_url, cloudflare_retry_deadline_seconds=1.0)
    bot = SlackClient(build_app(settings, seats_transport=AnswerLost(sandbox.transport())), slack)
    try:
        card = await card_for(bot, f"revoke {ALICE}")
        assert "now access ✓ / gateway ✓" in all_text(card)
        posts = await confirm(bot, card, 2, timeout=20)
        fresh = all_text(posts[-1])
        assert "Cloudflare unavailable" in fresh and "timed out" in fresh
        assert sandbox.patches  # applied at Cloudflare
        assert "now access ✗ / gateway ✗" in fresh and "now access ✓" not in fresh
    finally:
        await bot.aclose()
