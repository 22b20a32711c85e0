"""Hardening: signatures, forged clicks, any text at all, and secrets kept out of logs and Slack."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time

import fakeredis
import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.devtools.demo_account import DEMO_TOKEN
from bot.devtools.sandbox import Sandbox
from bot.domain.models import Pending, PendingTarget
from bot.domain.outcomes import Card, Notice
from bot.domain.parse import parse
from bot.errors import ParseError
from bot.logs import JsonFormatter, redact, request_scope, setup_logging
from bot.slack import blocks, replies
from tests.support.flow import audit_events, seat_flow
from tests.support.harness import (
    ADMIN,
    ALICE,
    BOT_TOKEN,
    OUTSIDER,
    SIGNING_SECRET,
    SlackClient,
    all_text,
    button,
    card_for,
    confirm,
    sign,
)

SPECIALS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S0TEAM|@oncall>",
    "&amp;",
    "&lt;",
    "&gt;",
    "&lt;!channel&gt;",
    "<@U0BOB|bob>",
    "<@W123>",
    "<mailto:a@b.co|a@b.co>",
    "alice@example.com",
    "--reason",
    "revoke",
    "status",
    "audit",
    "help",
    "\x00",
    "\u202e",
    "\u200b",
    "\n",
    "*bold*",
    "`",
]
LIVE_SPECIAL = re.compile(r"<!(?!date\^)")
MENTION_OK = re.compile(r"<@[UW][A-Z0-9]{2,20}>")


# -- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Signature": None, "X-Slack-Request-Timestamp": None},
        {"X-Slack-Request-Timestamp": str(int(time.time()) - 301)},
    ],
    ids=["wrong-signature", "missing-headers", "stale-timestamp"],
)
async def test_bad_signatures_get_401_and_do_nothing(
    bot: SlackClient, sandbox: Sandbox, headers: dict[str, str | None]
) -> None:
    """Wrong signature, missing headers and a timestamp older than 5 minutes: 401, no reply, no call."""
    body = bot.command_body_for_test(f"revoke {ALICE}")
    signed = sign(body)
    stamp = headers.get("X-Slack-Request-Timestamp")
    if stamp:
        signed = sign(body, timestamp=int(stamp))
    for name, value in headers.items():
        if value is None:
            signed.pop(name, None)
        elif name == "X-Slack-Signature":
            signed[name] = value
    response = await bot.post(body, signed)
    assert response.status_code == 401
    await asyncio.sleep(0.2)
    assert sandbox.requests == [] and not bot.slack.responses


# -- forged interactivity ------------------------------------------------------------------


EXPIRED_CLICK = ("This confirmation has expired or was already handled.", "expired_click")
NOT_ADMIN = (
    "Only seat-bot admins may confirm a revoke. Ask one of them: <@UADMIN1> or <@UADMIN2>.",
    "refused",
)


@pytest.mark.parametrize(
    ("value", "user", "answer"),
    [
        ("f" * 32, ADMIN, EXPIRED_CLICK),
        ("not-hex-" * 4, ADMIN, EXPIRED_CLICK),
        ('{"id": "x"}', ADMIN, EXPIRED_CLICK),
        ("", ADMIN, EXPIRED_CLICK),
        (None, OUTSIDER, NOT_ADMIN),
    ],
    ids=["made-up-id", "tampered", "json", "empty", "non-admin"],
)
async def test_forged_clicks_are_refused_audited_and_call_nothing(
    bot: SlackClient,
    sandbox: Sandbox,
    redis_client: aredis.Redis,
    value: str | None,
    user: str,
    answer: tuple[str, str],
) -> None:
    """A made-up id or tampered value is expired; a non-admin is refused as such; audited, no PATCH."""
    text, event = answer
    card = await card_for(bot, f"revoke {ALICE}")
    real = button(card, "seat_confirm")["value"]
    _, key = await bot.click("seat_confirm", real if value is None else value, user=user)
    (reply,) = await bot.slack.wait_responses(key, 1)
    assert reply["replace_original"] is False
    assert reply["text"] == text
    last = (await audit_events(redis_client))[-1]
    assert (last["event"], last["user"]) == (event, user)
    assert sandbox.patches == []
    _, ok = await bot.click("seat_confirm", real)  # the genuine card still works afterwards
    await bot.slack.wait_responses(ok, 3)
    assert len(sandbox.patches) == 1


# -- any text ------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(max_size=20)), max_size=60).map(" ".join),
    st.tuples(st.sampled_from(["revoke ", "status ", "audit ", ""]), st.text(max_size=200)).map("".join),
)


def assert_safe(message: blocks.Message) -> None:
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        for text in _texts(block):
            assert len(text) <= 3000
    # Slack parses mentions in mrkdwn objects and the notification text; plain_text shows as typed.
    for raw in [message["text"], *_texts(message["blocks"], mrkdwn_only=True)]:
        assert not LIVE_SPECIAL.search(raw), raw
        for mention in re.findall(r"<@[^>]*>", raw):
            assert MENTION_OK.fullmatch(mention), mention


def _texts(node: object, *, mrkdwn_only: bool = False) -> list[str]:
    if isinstance(node, dict):
        keep = isinstance(node.get("text"), str) and (not mrkdwn_only or node.get("type") == "mrkdwn")
        found = [node["text"]] if keep else []
        return found + [t for v in node.values() for t in _texts(v, mrkdwn_only=mrkdwn_only)]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v, mrkdwn_only=mrkdwn_only)]
    return []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
@example(text="revoke " + "x" * 10_000)
@example(text="revoke " + " ".join(["<!channel>"] * 2000))
@example(text="status <@U0BOB> &lt;!here&gt; --reason " + "é" * 9000)
def test_any_text_gets_a_safe_reply_and_invalid_input_calls_nothing(text: str) -> None:
    """Any command text: a reply within Block Kit limits, no live special mention, no call when invalid."""
    sandbox = Sandbox()
    try:
        parse(text)
        valid = True
    except ParseError:
        valid = False

    async def run() -> blocks.Message:
        redis = fakeredis.FakeAsyncRedis()  # the property is about parsing and rendering, not Redis
        async with seat_flow(sandbox, redis) as flow:
            reply = await flow.command(user=ADMIN, channel="C1", text=text)
        return replies.for_command(reply).message

    message = asyncio.run(run())
    assert_safe(message)
    if not valid:
        assert sandbox.requests == []


@settings(max_examples=150, deadline=None)
@given(
    reason=st.one_of(st.none(), texts),
    labels=st.lists(texts, min_size=1, max_size=50),
    problems=st.lists(texts, max_size=60),
)
def test_cards_stay_inside_block_kit_limits(
    reason: str | None, labels: list[str], problems: list[str]
) -> None:
    """Whatever people typed or Cloudflare returned, a card renders safely within limits."""
    targets = [
        PendingTarget(label=lbl, seat_uid=f"uid-{i}", email=lbl, name=lbl) for i, lbl in enumerate(labels)
    ]
    pending = Pending("a" * 32, "U1", "C1", targets, reason, 0.0, 600.0, two_person=True)
    assert_safe(blocks.card(Card(pending, tuple(problems), error=reason)))
    assert_safe(blocks.notice(Notice("\n".join(problems) or "x", kind="error", usage=True)))


# -- secrets -------------------------------------------------------------------------------


async def test_secrets_never_reach_logs_or_slack(bot: SlackClient, sandbox: Sandbox) -> None:
    """A full run with failures: neither logs nor Slack-bound messages contain a credential."""
    stream = io.StringIO()
    setup_logging("DEBUG", secrets_=[SIGNING_SECRET, BOT_TOKEN, DEMO_TOKEN], stream=stream)
    try:
        card = await card_for(bot, f"revoke {ALICE} --reason {BOT_TOKEN} {DEMO_TOKEN}")
        sandbox.inject(status=401, code=10000, message=f"bad token {DEMO_TOKEN}", methods=("PATCH",))
        await confirm(bot, card, 2)
        await bot.post("x=1", sign("x=1", secret="wrong"))
    finally:
        logging.getLogger().handlers = [
            h for h in logging.getLogger().handlers if not getattr(h, "_seatbot", 0)
        ]
    logs = stream.getvalue()
    slack_bound = json.dumps(dict(bot.slack.responses)) + json.dumps(bot.slack.posts)
    assert logs.count("\n") > 5 and "request_id" in logs
    for secret in (SIGNING_SECRET, BOT_TOKEN, DEMO_TOKEN):
        assert secret not in logs and secret not in slack_bound
    assert "[redacted]" in slack_bound  # the echoed token was caught, not merely absent


async def test_typed_mention_syntax_stays_escaped_in_replies(bot: SlackClient) -> None:
    """Text typed as `<@U…>` (escaped by Slack) is echoed escaped, never revived into a live mention."""
    message = await card_for(bot, "revoke &lt;@UVICTIM&gt;")
    assert "<@UVICTIM>" not in all_text(message) and "&lt;@UVICTIM&gt;" in all_text(message)


def test_log_lines_are_json_with_a_request_id() -> None:
    """Every line is one JSON object with the scope's request id, extra fields, and secrets masked."""
    secret = "log-line-secret-0f9e8d"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("seatbot.test.logs")
    logger.addHandler(handler)
    redact.add([secret])
    try:
        with request_scope() as rid:
            logger.warning("hello %s, token %s", "world", secret, extra={"status": 200})
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["msg"], inside["status"], inside["request_id"]) == (
        "hello world, token [redacted]",
        200,
        rid,
    )
    assert secret not in stream.getvalue()
    assert outside["request_id"] == "-" != rid


def test_settings_repr_hides_secrets() -> None:
    """SecretStr keeps tokens out of repr and str of the settings."""
    from bot.config import Settings

    s = Settings(_env_file=None, slack_bot_token=BOT_TOKEN, redis_url="redis://:hunter22@h:6379/0")
    assert BOT_TOKEN not in repr(s) and "hunter22" not in repr(s)
    assert "hunter22" in s.secrets()
