"""The HTTP edge: every well-formed Slack request reaches its handler; anything else gets 4xx, never 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest

from bot.devtools.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ALICE,
    CHANNEL,
    SIGNING_SECRET,
    SlackClient,
    action_body,
    command_body,
    running,
    sign,
)
from tests.support.workflow import function_executed

# Each field value from the report, in the field Slack would carry it in.
PAYLOAD_WORDS = [
    ("channel_name", "payload-oncall", "status " + ALICE),
    ("text", "", "revoke " + ALICE + " --reason payload team offboarding"),
    ("user_name", "payloadbot", "status " + ALICE),
    ("team_domain", "payloads-inc", "status " + ALICE),
    ("text", "", "status payload.eng@example.com"),
    ("channel_name", "payload", "help"),
]


@pytest.mark.parametrize(("field", "value", "text"), PAYLOAD_WORDS)
async def test_commands_mentioning_payload_reach_the_handler(
    bot: SlackClient, slack: FakeSlack, field: str, value: str, text: str
) -> None:
    """A slash command whose fields contain the word "payload" is answered like any other."""
    extra = {field: value} if field != "text" else {}
    body = command_body(text, user=ADMIN, channel=CHANNEL, response_url=slack.response_url("pl"), **extra)
    response = await bot.post(body)
    assert response.status_code == 200, response.text
    (reply,) = await slack.wait_responses("pl", 1)
    assert reply["text"]  # an answer of some kind: a card, a status report, usage


async def test_click_with_payload_in_its_values_reaches_the_handler(
    bot: SlackClient, slack: FakeSlack
) -> None:
    """An interaction is still recognised by its `payload` field (the other shape)."""
    body = action_body(
        "seat_cancel", "0" * 32, user=ADMIN, channel=CHANNEL, response_url=slack.response_url("c")
    )
    response = await bot.post(body)
    assert response.status_code == 200
    (reply,) = await slack.wait_responses("c", 1)
    assert "expired" in reply["text"]


# -- unsigned, badly signed, oversized, malformed --------------------------------------------


@pytest.fixture
async def small(slack: FakeSlack, sandbox: Sandbox, redis_url: str) -> AsyncIterator[SlackClient]:
    async with running(slack, sandbox, redis_url, seatbot_max_body_bytes=16_384) as client:
        yield client


UNSIGNED = [
    (b"a=\xff", {}),
    (b"payload=not-json", {}),
    (b"payload=%5B%5D", {}),
    (b"command=%2Fseat&text=help", {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}),
    (b"command=%2Fseat&text=help", {"X-Slack-Request-Timestamp": "1e9", "X-Slack-Signature": "v0=00"}),
    (b"\xff\xfe\x00", {"X-Slack-Request-Timestamp": "1700000000", "X-Slack-Signature": b"\xff"}),
]


@pytest.mark.parametrize(("body", "headers"), UNSIGNED)
async def test_unsigned_or_badly_signed_gets_401_and_body_is_never_logged(
    bot: SlackClient,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str | bytes],
) -> None:
    """401, not 500: the signature is checked on the raw bytes before anything parses them."""
    caplog.set_level(logging.DEBUG)
    response = await bot.http.post(
        "/slack/events",
        content=body,
        headers=[(b"content-type", b"application/x-www-form-urlencoded")]
        + [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()],
    )
    assert response.status_code == 401
    assert "Traceback" not in caplog.text
    assert slack.calls == [] and not slack.responses


async def test_real_request_failing_the_check_leaks_nothing_to_the_log(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real-looking request signed with the wrong secret: its response_url and user never reach a log."""
    caplog.set_level(logging.DEBUG)  # before the app exists: its loggers take their level from the root
    async with running(slack, sandbox, redis_url) as bot:
        url = slack.response_url("x")
        body = command_body("status " + ALICE, user="USECRETUSER", channel=CHANNEL, response_url=url)
        response = await bot.post(body, headers=sign(body, secret="not-the-secret-000000"))
    assert response.status_code == 401
    assert "rejected a request: invalid signature" in caplog.text
    assert "USECRETUSER" not in caplog.text and "/response/x" not in caplog.text
    assert ALICE not in caplog.text


async def test_oversized_body_gets_413_without_reading_the_rest(small: SlackClient) -> None:
    """The body is read with a counter: past the bound, 413 and the remaining chunks are never pulled."""
    pulled = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"a" * 4096

    response = await small.http.post("/slack/events", content=stream(), headers=sign("x"))
    assert response.status_code == 413
    assert pulled <= 6  # 16 KiB bound / 4 KiB chunks, not the 4 MB offered
    declared = await small.http.post(
        "/slack/events", content=b"a=1", headers={**sign("a=1"), "Content-Length": str(100 * 2**20)}
    )
    assert declared.status_code == 413


def _signed_payload(payload: object) -> str:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)})


def _click(**changes: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "type": "block_actions",
        "user": {"id": ADMIN},
        "actions": [{"action_id": "seat_confirm", "value": "0" * 32}],
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
    }
    return payload | changes


MALFORMED = [
    _signed_payload("not-json"),
    _signed_payload([]),
    _signed_payload({"no": "type"}),
    _signed_payload(_click(actions="seat_confirm")),
    _signed_payload(_click(actions=[])),
    _signed_payload(_click(actions=["seat_confirm"])),
    _signed_payload(_click(user="UADMIN1")),
    _signed_payload(_click(response_url=7)),
    urlencode({"command": "/seat", "text": "help", "channel_id": CHANNEL}),  # no user_id
    urlencode({"hello": "world"}),
    "a=%ZZ&&&b",
]


@pytest.mark.parametrize("body", MALFORMED)
async def test_signed_but_malformed_gets_400_never_500(
    bot: SlackClient, slack: FakeSlack, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, body: str
) -> None:
    """Signed bodies without one of Slack's shapes are refused at once with 400 and call nothing."""
    response = await bot.post(body)
    assert response.status_code == 400, response.text
    assert "Traceback" not in caplog.text
    assert sandbox.requests == [] and not slack.responses


async def test_signed_non_utf8_gets_400(bot: SlackClient) -> None:
    """Bytes that are not UTF-8 but correctly signed: a clear 400."""
    body = b"command=%2Fseat&text=\xff"
    ts = str(int(time.time()))
    sig = (
        "v0="
        + hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    )
    response = await bot.http.post(
        "/slack/events",
        content=body,
        headers={
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 400


# -- odd input that once reached a 500 (issue 18 §4) ------------------------------------------


def _signed_bytes(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
        "Content-Type": content_type,
    }


@pytest.mark.parametrize("stamp", [b"\xb2", b"1\xb2\xb3", b"\xb9" * 10], ids=["²", "1²³", "¹×10"])
async def test_a_timestamp_isdigit_accepts_but_int_refuses_gets_401(
    bot: SlackClient, caplog: pytest.LogCaptureFixture, stamp: bytes
) -> None:
    """Headers arrive as latin-1: "²" is a digit to str.isdigit() and not to int(): 401, not 500."""
    caplog.set_level(logging.INFO)
    response = await bot.http.post(
        "/slack/events",
        content=b"command=%2Fseat&text=help",
        headers=[(b"x-slack-request-timestamp", stamp), (b"x-slack-signature", b"v0=00")],
    )
    assert response.status_code == 401 and response.json() == {"error": "invalid signature"}
    assert "Traceback" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.name == "seatbot.edge"] == [
        "rejected a request: invalid signature"
    ]


async def test_a_content_length_isdigit_accepts_but_int_refuses_gets_400(bot: SlackClient) -> None:
    response = await bot.http.post(
        "/slack/events",
        content=b"a=1",
        headers=[(b"content-length", b"\xb2"), *((k.encode(), v.encode()) for k, v in sign("a=1").items())],
    )
    assert response.status_code == 400


def _event(**event: object) -> bytes:
    envelope = function_executed({"channel": CHANNEL, "target": ALICE}, "Fx1")
    return json.dumps(envelope | {"event": envelope["event"] | event}).encode()


def _nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth):
        value = {"values": value}
    return value


ODD_SIGNED = [
    ("[" * 100_000 + "]" * 100_000, "application/json"),  # RecursionError in json.loads
    ('{"type": "event_callback", "event": ' + "[" * 5000 + "]" * 5000 + "}", "application/json"),
    (_signed_payload(_click(channel="C0OPS")), "application/x-www-form-urlencoded"),
    (_signed_payload(_click(channel=["C0OPS"])), "application/x-www-form-urlencoded"),
    (_signed_payload(_click(container="C0OPS")), "application/x-www-form-urlencoded"),
    (_signed_payload(_click(team=7)), "application/x-www-form-urlencoded"),
    (_signed_payload(_click(authorizations=7)), "application/x-www-form-urlencoded"),
    (_signed_payload(_click(actions=[{"action_id": "seat_confirm", "value": {"a": 1}}])), "x"),
    (_signed_payload(_click(state=_nested(70))), "x"),  # deeper than any real payload
    (_event(inputs="channel=C1").decode(), "application/json"),
    (_event(inputs=["target"]).decode(), "application/json"),
    (_event(inputs=None).decode(), "application/json"),
    (_event(function_execution_id=7).decode(), "application/json"),
    (_event(function_execution_id="").decode(), "application/json"),
    (_event(function="revoke_seat").decode(), "application/json"),
    (json.dumps({"type": "event_callback", "event": "app_home_opened"}), "application/json"),
    (
        json.dumps({"type": "event_callback", "event": {"type": "app_home_opened", "user": 7}}),
        "application/json",
    ),
    (json.dumps({"type": "url_verification", "challenge": {"x": 1}}), "application/json"),
]


@pytest.mark.parametrize(("body", "content_type"), ODD_SIGNED)
async def test_signed_odd_shapes_get_400_and_one_log_line(
    bot: SlackClient,
    slack: FakeSlack,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
    body: str,
    content_type: str,
) -> None:
    """Signed, but not what Slack sends: nested past any real payload, a channel that is a string, a
    step's inputs that are not an object. 400 with one JSON log line; no listener, no Slack call."""
    caplog.set_level(logging.INFO)
    if content_type == "x":
        content_type = "application/x-www-form-urlencoded"
    raw = body.encode()
    response = await bot.http.post("/slack/events", content=raw, headers=_signed_bytes(raw, content_type))
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].getMessage().startswith("rejected a request: ")
    assert lines[0].exc_info is None and "Traceback" not in caplog.text
    assert sandbox.requests == [] and not slack.responses and slack.calls == []
