"""`python -m bot check`: settings, Slack auth.test, one read-only Cloudflare call, Redis PING."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.cloudflare.client import CloudflareClient
from bot.config import Settings
from bot.errors import SeatbotError
from bot.state.redis import connect_redis, redis_status


async def run_checks(settings: Settings, *, out: Callable[[str], None] = print) -> int:
    failures = 0

    async def one(name: str, probe: Callable[[], Awaitable[str]]) -> None:
        nonlocal failures
        try:
            detail = await probe()
            out(f"OK   {name}: {detail}")
        except Exception as exc:
            failures += 1
            text = str(exc) if isinstance(exc, SeatbotError) else type(exc).__name__
            out(f"FAIL {name}: {text}")

    async def config() -> str:
        settings.require("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN")
        settings.require_cloudflare()
        admins = len(settings.seatbot_admins) + len(settings.seatbot_admin_groups)
        if not admins:
            raise SeatbotError("SEATBOT_ADMINS or SEATBOT_ADMIN_GROUPS: not set, nobody may revoke")
        return "settings valid"

    async def slack() -> str:
        from slack_sdk.web.async_client import AsyncWebClient

        client = AsyncWebClient(token=settings.bot_token(), base_url=settings.slack_api_url)
        response = await client.auth_test()
        return f"auth.test as {response.get('user')} in {response.get('team')}"

    async def cloudflare() -> str:
        async with CloudflareClient.from_settings(settings) as cf:
            await cf.ping()
        return "users list readable"

    async def redis() -> str:
        if settings.redis_url is None:
            return "REDIS_URL not set: in-process store (one process only)"
        client = connect_redis(settings)
        try:
            status = await redis_status(client)
        finally:
            await client.aclose()
        if status != "ok":
            raise SeatbotError("PING failed: Redis unreachable")
        return "PING ok"

    for name, probe in (("config", config), ("slack", slack), ("cloudflare", cloudflare), ("redis", redis)):
        await one(name, probe)
    return 1 if failures else 0
