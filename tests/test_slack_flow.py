"""Scenario tests: signed Slack requests through the real app, real Redis, fake Slack, sandbox Cloudflare."""

from __future__ import annotations

import asyncio
import re
import time

import redis.asyncio as aredis

from bot.devtools.sandbox import Sandbox
from bot.state.pending import PREFIX
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ADMIN2,
    ALICE,
    OUTSIDER,
    SlackClient,
    all_text,
    build,
    button,
    card_for,
    confirm,
    running,
)


async def test_help_is_ephemeral_usage(bot: SlackClient) -> None:
    """`/seat help` answers only the requester with the usage line."""
    response, key = await bot.command("help")
    assert response.status_code == 200
    (message,) = await bot.slack.wait_responses(key, 1)
    assert message["response_type"] == "ephemeral"
    assert "/seat revoke" in all_text(message)


async def test_unknown_subcommand_gets_usage_and_no_cloudflare_call(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """Anything else gets an ephemeral error with the usage line and never reaches Cloudflare."""
    message = await card_for(bot, "delete everyone")
    assert message["response_type"] == "ephemeral"
    assert "Unknown command" in all_text(message) and "Usage" in all_text(message)
    assert sandbox.requests == []


async def test_revoke_card_shows_state_and_stores_pending(
    bot: SlackClient, redis_client: aredis.Redis
) -> None:
    """An email target becomes an ephemeral card with current state, danger button and a stored id."""
    message = await card_for(bot, f"revoke {ALICE} --reason offboarding")
    assert message["response_type"] == "ephemeral"
    text = all_text(message)
    assert ALICE in text and "access ✓ / gateway ✓" in text and "offboarding" in text
    confirm = button(message, "seat_confirm")
    assert confirm["style"] == "danger" and "confirm" in confirm
    assert len(confirm["value"]) == 32 and int(confirm["value"], 16) >= 0
    assert button(message, "seat_cancel")["value"] == confirm["value"]
    ttl = await redis_client.ttl(PREFIX + confirm["value"])
    assert 590 <= ttl <= 600


async def test_confirm_revokes_and_posts_state_in_channel(bot: SlackClient, sandbox: Sandbox) -> None:
    """One click: Revoking… on the card, then Cloudflare's returned state in the channel."""
    message = await card_for(bot, f"revoke {ALICE} --reason left the company")
    response, key = await bot.click("seat_confirm", button(message, "seat_confirm")["value"])
    assert response.status_code == 200
    posts = await bot.slack.wait_responses(key, 3)
    assert "Revoking" in posts[0]["text"] and posts[0]["replace_original"] is True
    outcome = posts[1]
    assert outcome["response_type"] == "in_channel" and outcome["replace_original"] is False
    text = all_text(outcome)
    assert "access ✗ / gateway ✗" in text and ALICE in text
    assert f"<@{ADMIN}>" in text and "left the company" in text
    assert posts[2]["replace_original"] is True
    (patch,) = sandbox.patches
    user = next(u for u in sandbox.users.values() if u["email"] == ALICE)
    assert patch.body == [{"seat_uid": user["seat_uid"], "access_seat": False, "gateway_seat": False}]
    assert user["access_seat"] is False and user["gateway_seat"] is False


async def test_cancel_makes_no_call(bot: SlackClient, sandbox: Sandbox) -> None:
    """Cancel replaces the card and never calls Cloudflare; the id is then used up."""
    message = await card_for(bot, f"revoke {ALICE}")
    value = button(message, "seat_cancel")["value"]
    _, key = await bot.click("seat_cancel", value)
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert "Cancelled by" in reply["text"] and reply["replace_original"] is True
    _, key2 = await bot.click("seat_confirm", value)
    (late,) = await bot.slack.wait_responses(key2, 1)
    assert "expired or was already handled" in late["text"]
    assert sandbox.patches == []


async def test_twenty_concurrent_confirms_patch_once(bot: SlackClient, sandbox: Sandbox) -> None:
    """Double clicks and retries: of 20 simultaneous confirms exactly one reaches Cloudflare.

    Cloudflare is held mid-call, so what the other 19 are told does not depend on timing: while the
    first click's revoke runs they are "still being handled"; once it has finished, "already handled".
    """
    message = await card_for(bot, f"revoke {ALICE}")
    value = button(message, "seat_confirm")["value"]
    sandbox.hold = asyncio.Event()
    results = await asyncio.gather(*(bot.click("seat_confirm", value) for _ in range(20)))
    assert all(r.status_code == 200 for r, _ in results)
    keys = [k for _, k in results]

    def told(pattern: str) -> list[str]:
        return [k for k in keys if re.search(pattern, all_text(bot.slack.responses[k]))]

    try:
        await bot.slack.wait_for(lambda: len(told("still being handled")) == 19, 15)
    except TimeoutError:
        raise AssertionError([(k, all_text(bot.slack.responses[k])[:150]) for k in keys]) from None
    (winner,) = set(keys) - set(told("still being handled"))
    sandbox.hold.set()
    await bot.slack.wait_for(lambda: "access ✗ / gateway ✗" in all_text(bot.slack.responses[winner]), 15)
    # every click has had its last word: nothing more can reach Cloudflare from these 20
    assert [r.method for r in sandbox.requests].count("PATCH") == 1 and len(sandbox.patches) == 1
    assert all(len(bot.slack.responses[k]) == 1 for k in keys if k != winner)
    _, late = await bot.click("seat_confirm", value)  # after the revoke: the card is used up
    (reply,) = await bot.slack.wait_responses(late, 1)
    assert "already handled" in reply["text"] and len(sandbox.patches) == 1


async def test_command_on_one_instance_click_on_another(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Two processes sharing one Redis: the card from A is confirmed on B, and only once."""
    a, b = build(slack, sandbox, redis_url), build(slack, sandbox, redis_url)
    try:
        message = await card_for(a, f"revoke {ALICE}")
        value = button(message, "seat_confirm")["value"]
        (_, k1), (_, k2) = await asyncio.gather(
            b.click("seat_confirm", value), a.click("seat_confirm", value)
        )
        await slack.wait_for(lambda: len(slack.responses[k1]) + len(slack.responses[k2]) >= 4)
        assert len(sandbox.patches) == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_expired_card_is_refused(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """With a 1-second TTL the click after expiry says so and calls nothing."""
    async with running(slack, sandbox, redis_url, seatbot_confirm_ttl_seconds=1) as bot:
        message = await card_for(bot, f"revoke {ALICE}")
        await asyncio.sleep(1.1)
        _, key = await bot.click("seat_confirm", button(message, "seat_confirm")["value"])
        (reply,) = await slack.wait_responses(key, 1)
        assert "expired or was already handled" in reply["text"]
        assert sandbox.patches == []


async def test_non_admin_is_refused_at_command_and_click(bot: SlackClient, sandbox: Sandbox) -> None:
    """Someone not in SEATBOT_ADMINS can neither request nor confirm."""
    message = await card_for(bot, f"revoke {ALICE}", user=OUTSIDER)
    assert "Only seat-bot admins" in message["text"] and message["response_type"] == "ephemeral"
    card = await card_for(bot, f"revoke {ALICE}")
    _, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"], user=OUTSIDER)
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert "Only seat-bot admins" in reply["text"] and reply["replace_original"] is False
    assert sandbox.requests and sandbox.patches == []


async def test_other_admin_cannot_confirm_requesters_card(bot: SlackClient, sandbox: Sandbox) -> None:
    """Another admin's click is refused and leaves the card usable by its requester."""
    card = await card_for(bot, f"revoke {ALICE}")
    value = button(card, "seat_confirm")["value"]
    _, key = await bot.click("seat_confirm", value, user=ADMIN2)
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert "Only the admin who asked for this can confirm it" in reply["text"]
    assert sandbox.patches == []
    _, key2 = await bot.click("seat_confirm", value, user=ADMIN)
    await bot.slack.wait_responses(key2, 3)
    assert len(sandbox.patches) == 1


async def test_injection_text_never_pings(bot: SlackClient) -> None:
    """`<!channel>`, `<!here>` and entities in the reason are shown escaped, never live."""
    card = await card_for(bot, f"revoke {ALICE} --reason <!channel> &lt;!here&gt; &amp; <!subteam^S1>")
    posts = await confirm(bot, card, 3)
    for message in (card, *posts):
        text = all_text(message)
        assert "<!channel>" not in text and "<!here>" not in text and "<!subteam" not in text
    assert "&lt;!channel&gt;" in all_text(posts[1]) and "&lt;!here&gt;" in all_text(posts[1])


async def test_html_entities_are_unescaped_before_parsing(
    bot: SlackClient, redis_client: aredis.Redis
) -> None:
    """Slack's &amp;/&lt;/&gt; become the characters the person typed, then are escaped once for display."""
    card = await card_for(bot, f"revoke {ALICE} --reason R&amp;D &lt;team&gt;")
    raw = await redis_client.get(PREFIX + button(card, "seat_confirm")["value"])
    assert isinstance(raw, bytes)
    assert b'"reason":"R&D <team>"' in raw
    assert "R&amp;D &lt;team&gt;" in all_text(card)


async def test_mention_and_email_targets(bot: SlackClient, slack: FakeSlack, sandbox: Sandbox) -> None:
    """A mention resolves through users.info to its email; both targets land on one card."""
    slack.emails["U0BOB"] = "Bob@Example.com"
    card = await card_for(bot, f"revoke <@U0BOB|bob> <mailto:{ALICE}|{ALICE}>")
    text = all_text(card)
    assert "bob@example.com" in text and ALICE in text and "Revoke 2 seats" in text
    assert ("users.info", {"user": "U0BOB"}) in [(m, {"user": a.get("user")}) for m, a in slack.calls]
    await confirm(bot, card, 3)
    assert {s["seat_uid"] for s in sandbox.patches[0].body} == {
        u["seat_uid"] for u in sandbox.users.values() if u["email"] in ("bob@example.com", ALICE)
    }


async def test_unresolvable_targets_get_own_lines(bot: SlackClient, sandbox: Sandbox) -> None:
    """A target with no seat gets its own line; with none left there is no card."""
    card = await card_for(bot, f"revoke nobody@example.com {ALICE}")
    assert "nobody@example.com: no Zero Trust user" in all_text(card)
    assert button(card, "seat_confirm")["text"]["text"] == "Revoke 1 seat"
    only_bad = await card_for(bot, "revoke nobody@example.com <@U0GHOST>")
    assert "Nothing to revoke" in only_bad["text"]
    assert "U0GHOST: no email visible" in all_text(only_bad)
    assert not any(b["type"] == "actions" for b in only_bad["blocks"])


async def test_lookalike_email_is_never_matched(bot: SlackClient, sandbox: Sandbox) -> None:
    """alice@ must never pick malice@ even though Cloudflare's search matches both."""
    by_email = {user["email"]: user for user in sandbox.users.values()}
    alice, malice = by_email[ALICE], by_email["malice@example.com"]
    card = await card_for(bot, f"revoke {ALICE}")  # a card with a button: one holder, not two
    assert "malice@example.com" not in all_text(card)
    await confirm(bot, card, 2)
    (patch,) = sandbox.patches
    assert [seat["seat_uid"] for seat in patch.body] == [alice["seat_uid"]]
    assert alice["access_seat"] is False and malice["access_seat"] is True


async def test_ack_comes_before_slow_cloudflare(bot: SlackClient, sandbox: Sandbox) -> None:
    """Slack gets its 200 at once even when Cloudflare takes 2 seconds."""
    sandbox.latency = 2.0
    started = time.perf_counter()
    response, key = await bot.command(f"revoke {ALICE}")
    assert response.status_code == 200
    assert time.perf_counter() - started < 0.5
    await bot.slack.wait_responses(key, 1, timeout=10)


async def test_no_admins_configured_names_the_setting(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """With neither admin setting, revoke is refused with the variable to set."""
    async with running(slack, sandbox, redis_url, seatbot_admins=()) as bot:
        message = await card_for(bot, f"revoke {ALICE}")
        assert "SEATBOT_ADMINS" in message["text"] and sandbox.requests == []


async def test_admin_group_membership_and_channel_limit(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Members of SEATBOT_ADMIN_GROUPS may revoke, but only in SEATBOT_CHANNELS."""
    slack.groups["S0ONCALL"] = ["U0ONCALL"]
    bot = build(
        slack,
        sandbox,
        redis_url,
        seatbot_admins=(),
        seatbot_admin_groups=("S0ONCALL",),
        seatbot_channels=("C0OK",),
    )
    try:
        elsewhere = await card_for(bot, f"revoke {ALICE}", user="U0ONCALL", channel="C0RANDOM")
        assert "Use <#C0OK>." in elsewhere["text"] and "SEATBOT_CHANNELS" not in elsewhere["text"]
        card = await card_for(bot, f"revoke {ALICE}", user="U0ONCALL", channel="C0OK")
        assert button(card, "seat_confirm")
        outsider = await card_for(bot, f"revoke {ALICE}", user=OUTSIDER, channel="C0OK")
        assert "Only seat-bot admins" in outsider["text"]
        assert slack.methods().count("usergroups.users.list") == 1  # cached
    finally:
        await bot.aclose()


async def test_status_is_read_only(bot: SlackClient, sandbox: Sandbox) -> None:
    """`/seat status` shows email, name, seat, flags and last login, and changes nothing."""
    message = await card_for(bot, f"status {ALICE}")
    text = all_text(message)
    assert "Alice Example" in text and "access ✓ / gateway ✓" in text and "last login" in text
    assert sandbox.patches == [] and message["response_type"] == "ephemeral"


async def test_cloudflare_failure_offers_fresh_try(bot: SlackClient, sandbox: Sandbox) -> None:
    """A refused PATCH shows Cloudflare's code and message, claims nothing, and a fresh try works."""
    card = await card_for(bot, f"revoke {ALICE}")
    sandbox.inject(
        status=403, code=10000, message="Authentication error: seats write missing", methods=("PATCH",)
    )
    posts = await confirm(bot, card, 2)
    failed = posts[1]
    assert "10000" in failed["text"] or "10000" in all_text(failed)
    assert "seats write missing" in all_text(failed)
    assert not any(p.get("response_type") == "in_channel" for p in posts)
    retry = button(failed, "seat_confirm")["value"]
    assert retry != button(card, "seat_confirm")["value"]
    _, key2 = await bot.click("seat_confirm", retry)
    posts2 = await bot.slack.wait_responses(key2, 3)
    assert "access ✗ / gateway ✗" in all_text(posts2[1])


async def test_seat_missing_from_result_is_not_confirmed(bot: SlackClient, sandbox: Sandbox) -> None:
    """A seat Cloudflare leaves out of `result` is flagged not confirmed, never reported done."""
    alice = next(u for u in sandbox.users.values() if u["email"] == ALICE)
    sandbox.omit.add(alice["seat_uid"])
    card = await card_for(bot, f"revoke {alice['seat_uid']} bob@example.com")
    posts = await confirm(bot, card, 3)
    text = all_text(posts[1])
    assert "Revoke partly confirmed: 1 of 2" in posts[1]["text"]
    bob = next(u for u in sandbox.users.values() if u["email"] == "bob@example.com")
    assert f"*{ALICE}* — seat `{alice['seat_uid']}` — *not confirmed*" in text
    assert f"bob@example.com* — seat `{bob['seat_uid']}` — access ✗ / gateway ✗" in text


async def test_failed_uid_lookup_keeps_the_other_targets(bot: SlackClient, sandbox: Sandbox) -> None:
    """A refused seat-UID listing gives each UID its own line; email targets still make the card."""
    sandbox.inject(status=403, code=10000, message="listing denied", methods=("GET",))
    card = await card_for(bot, f"revoke 00000000-0000-4000-8000-000000000000 {ALICE}")
    text = all_text(card)
    assert "00000000-0000-4000-8000-000000000000: Cloudflare look-up failed: 10000: listing denied" in text
    assert button(card, "seat_confirm")["text"]["text"] == "Revoke 1 seat" and ALICE in text


async def test_unknown_seat_uid_is_refused_not_sent(bot: SlackClient, sandbox: Sandbox) -> None:
    """A UID no user holds (usually a typo) gets its own line and never reaches the PATCH."""
    message = await card_for(bot, "revoke dave2 00000000-0000-4000-8000-000000000000")
    assert "Nothing to revoke" in message["text"]
    assert "dave2: no Zero Trust user holds this seat UID" in all_text(message)
    assert sandbox.patches == []


async def test_healthz_and_readyz_report_redis(bot: SlackClient, slack: FakeSlack, sandbox: Sandbox) -> None:
    """/readyz: 200 with Redis up, 503 when Redis cannot be reached; /healthz (alive): 200, saying why."""
    for path in ("/healthz", "/readyz"):
        ok = await bot.http.get(path)
        assert ok.status_code == 200 and ok.json()["redis"] == "ok"
    async with running(slack, sandbox, "redis://127.0.0.1:1/0") as dead:
        down = await dead.http.get("/readyz")
        assert down.status_code == 503 and down.json() == {"ready": False, "redis": "unreachable"}
        alive = await dead.http.get("/healthz")
        assert alive.status_code == 200 and alive.json()["redis"] == "unreachable"
