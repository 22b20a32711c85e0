"""The audit trail keeps what matters (issue 18 §3): refusals and expired clicks, which anyone can
cause, are kept apart from real events and capped per person, so a flood of them never pushes a
requested/confirmed/succeeded event out of `/seat audit` or the App Home. Real app, real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.state.audit import NOISE, REFUSALS, STREAM
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, ALICE, OUTSIDER, all_text, card_for, confirm, running


async def test_a_flood_of_refusals_never_pushes_real_events_out(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    async with running(
        slack, sandbox, redis_url, seatbot_audit_maxlen=100, seatbot_audit_noise_maxlen=100
    ) as bot:
        card = await card_for(bot, f"revoke {ALICE} --reason left")
        await confirm(bot, card, 3)
        # one non-admin, 150 refused commands (more than either stream holds), 10 at a time
        for start in range(0, 150, 10):
            answers = await asyncio.gather(
                *(bot.command(f"revoke {ALICE}", user=OUTSIDER) for _ in range(start, start + 10))
            )
            assert all(response.status_code == 200 for response, _ in answers)
        await slack.wait_for(lambda: sum(map(len, slack.responses.values())) >= 150 + 3, timeout=20)

        report = all_text(await card_for(bot, "audit 50"))
        for event in ("requested", "confirmed", "succeeded"):
            assert f"*{event}* by <@{ADMIN}>" in report
        assert "Refused and expired clicks, kept apart (150 in all)" in report
        real = [e["event"] for e in await bot.app.state.runtime.flow.audit.recent(50)]
        assert real == ["succeeded", "confirmed", "requested"]
        # the person's refusals: at most 20 a minute stored (this one minute, or two if it turned),
        # every one counted
        assert await redis_client.xlen(NOISE) <= 40 and await redis_client.xlen(STREAM) == 3
        assert int(await redis_client.hget(REFUSALS, OUTSIDER) or 0) == 150
        home = (await bot.app.state.runtime.home.overview(ADMIN)).events
        assert [e["event"] for e in home][:3] == ["succeeded", "confirmed", "requested"]
