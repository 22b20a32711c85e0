"""Where replies go: only Slack's response_urls, the Web API otherwise, and outcomes are never lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest

from bot.devtools.sandbox import Sandbox
from bot.slack.delivery import trusted_response_url
from bot.slack.web import build_app
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ALICE,
    CHANNEL,
    OUTSIDER,
    SlackClient,
    action_body,
    button,
    card_for,
    command_body,
    running,
    settings_for,
    sign,
)

API = "http://127.0.0.1:9999/api/"


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://hooks.slack.com/commands/T1/1/abc", True),
        ("https://HOOKS.slack.com:443/actions/T1/1/abc", True),
        ("http://127.0.0.1:9999/response/k", True),  # the origin of SLACK_API_URL
        ("http://hooks.slack.com/commands/T1/1/abc", False),
        ("https://hooks.slack.com:8443/x", False),
        ("https://hooks.slack.com@127.0.0.1:8792/", False),
        ("https://user:pw@hooks.slack.com/x", False),
        ("https://hooks.slack.com.evil.test/x", False),
        ("https://evil.test/hooks.slack.com/x", False),
        ("http://127.0.0.1:8792/internal/admin/delete", False),
        ("http://localhost:9999/response/k", False),
        ("http://0x7f000001:9999/response/k", False),
        ("http://127.0.0.1:6379/", False),
        ("http://[::1]:9999/x", False),
        ("https://hooks.slack.com:99999/x", False),
        ("javascript:alert(1)", False),
        ("", False),
    ],
)
def test_only_slack_hooks_or_the_api_origin_are_trusted(url: str, trusted: bool) -> None:
    """Exact host, scheme and port; no user-info; the SLACK_API_URL origin for proxies and tests."""
    assert trusted_response_url(url, api_url=API) is trusted


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeSlack]:
    """Another HTTP server on this machine: an internal service a forged response_url points at."""
    other = FakeSlack()
    await other.start()
    yield other
    await other.stop()


@pytest.mark.parametrize(
    "template",
    [
        "{other}/internal/admin/delete",
        "http://localhost:{port}/response/k",
        "http://0x7f000001:{port}/response/k",
        "https://hooks.slack.com@127.0.0.1:{port}/response/k",
        "",
    ],
)
async def test_foreign_response_url_is_never_posted_to(
    bot: SlackClient,
    slack: FakeSlack,
    elsewhere: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    template: str,
) -> None:
    """The status report goes to the person through chat.postEphemeral, never to that address."""
    port = elsewhere.url.rsplit(":", 1)[1]
    url = template.format(other=elsewhere.url, port=port)
    body = command_body(f"status {ALICE}", user=ADMIN, channel=CHANNEL, response_url=url)
    assert (await bot.post(body)).status_code == 200
    await slack.wait_for(lambda: len(slack.ephemerals) >= 1)
    (sent,) = slack.ephemerals
    assert sent["user"] == ADMIN and sent["channel"] == CHANNEL and ALICE in str(sent["blocks"])
    assert not elsewhere.responses and not elsewhere.calls
    assert "answering through the Web API" in caplog.text


async def test_redirects_are_not_followed_and_the_outcome_is_posted_in_the_channel(
    bot: SlackClient, slack: FakeSlack, sandbox: Sandbox
) -> None:
    """A response_url answering 307 is not followed; the revoke's outcome goes to chat.postMessage."""
    card = await card_for(bot, f"revoke {ALICE}")
    value = button(card, "seat_confirm")["value"]
    body = action_body(
        "seat_confirm", value, user=ADMIN, channel=CHANNEL, response_url=f"{slack.url}/redirect/r1"
    )
    assert (await bot.post(body)).status_code == 200
    await slack.wait_for(lambda: len(slack.posts) >= 1)
    assert "Zero Trust seats revoked: 1 of 1" in slack.posts[0]["text"]
    assert slack.posts[0]["channel"] == CHANNEL
    assert not slack.responses["r1"]  # the redirect target never got the re-sent POST
    assert len(sandbox.patches) == 1


@pytest.mark.parametrize("response_url", ["refused", "missing"])
async def test_outcome_survives_a_failing_response_url(
    bot: SlackClient, slack: FakeSlack, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, response_url: str
) -> None:
    """After the PATCH, an outcome that response_url cannot take is posted in the card's channel."""
    card = await card_for(bot, f"revoke {ALICE}")
    value = button(card, "seat_confirm")["value"]
    url = ""
    if response_url == "refused":  # expired or broken: Slack answers 404
        slack.reject_responses = True
        url = slack.response_url("gone")
    body = action_body("seat_confirm", value, user=ADMIN, channel=CHANNEL, response_url=url)
    assert (await bot.post(body)).status_code == 200
    await slack.wait_for(lambda: len(slack.posts) >= 1)
    assert "Zero Trust seats revoked: 1 of 1" in slack.posts[0]["text"]
    assert slack.posts[0]["channel"] == CHANNEL
    assert len(sandbox.patches) == 1
    if response_url == "refused":
        assert "posting it with chat.postMessage in the card's channel" in caplog.text


# -- item 10: the PATCH does not wait for the progress note ----------------------------------


class Timed(httpx.AsyncBaseTransport):
    """The sandbox transport, noting when each PATCH leaves the bot."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.patched_at: list[float] = []
        self.called_at: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.called_at.append(time.perf_counter())
        if request.method == "PATCH":
            self.patched_at.append(time.perf_counter())
        return await self.inner.handle_async_request(request)


async def test_patch_starts_before_the_progress_note_is_answered(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: object
) -> None:
    """With Slack 300 ms away, the PATCH leaves at once; the result still lands after the progress note."""
    timed = Timed(sandbox.transport())
    bot = SlackClient(build_app(settings_for(slack, sandbox, redis_url), seats_transport=timed), slack)
    try:
        card = await card_for(bot, f"revoke {ALICE}")
        slack.latency = 0.3
        clicked = time.perf_counter()
        _, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
        posts = await slack.wait_responses(key, 3)
        (patched,) = timed.patched_at
        assert patched - clicked < 0.2
        assert [p.get("replace_original") for p in posts] == [True, False, True]
        assert "Revoking" in posts[0]["text"] and "revoked: 1 of 1" in posts[1]["text"]
    finally:
        await bot.aclose()


# -- item 8: nobody waits behind somebody else's Cloudflare call ------------------------------


async def test_help_refusal_and_cancel_never_wait_and_slow_commands_hit_their_deadline(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: object
) -> None:
    """Four status commands hold the Cloudflare lane; help, a refusal and a cancel are answered at once."""
    async with running(slack, sandbox, redis_url, seatbot_command_deadline_seconds=1.0) as bot:
        card = await card_for(bot, f"revoke {ALICE}")
        sandbox.latency = 3.0
        started = time.perf_counter()
        slow = [(await bot.command(f"status {ALICE}"))[1] for _ in range(5)]
        _, helped = await bot.command("help")
        _, refused = await bot.command(f"status {ALICE}", user=OUTSIDER)
        _, cancelled = await bot.click("seat_cancel", button(card, "seat_cancel")["value"])
        for key in (helped, refused, cancelled):
            await slack.wait_responses(key, 1)
        assert time.perf_counter() - started < 0.8
        assert not any(slack.responses[k] for k in slow)
        for key in slow:
            (reply,) = await slack.wait_responses(key, 1, timeout=3)
            assert "stopped after 1 seconds" in reply["text"] and "nothing was changed" in reply["text"]
        assert time.perf_counter() - started < 1.8  # the fifth waited for a place within the same deadline


async def test_audit_command_does_not_wait_either(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: object
) -> None:
    """`/seat audit` reads Redis only: answered while Cloudflare-bound commands fill every place."""
    async with running(slack, sandbox, redis_url, seatbot_command_deadline_seconds=1.0) as bot:
        sandbox.latency = 2.0
        for _ in range(4):
            await bot.command(f"status {ALICE}")
        started = time.perf_counter()
        _, key = await bot.command("audit")
        await slack.wait_responses(key, 1)
        assert time.perf_counter() - started < 0.5


# -- item 9: work after the ack never runs ahead of it -----------------------------------------


def events_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a POST to /slack/events, for driving the app without an HTTP client."""
    return {
        "type": "http",
        "method": "POST",
        "path": "/slack/events",
        "headers": headers,
        "query_string": b"",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("bot.test", 80),
    }


async def test_command_work_starts_only_after_the_ack_is_sent(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: object
) -> None:
    """The first Cloudflare call of `/seat status` leaves after the 200 is written, not before."""
    timed = Timed(sandbox.transport())
    app = build_app(settings_for(slack, sandbox, redis_url), seats_transport=timed)
    body = command_body(f"status {ALICE}", user=ADMIN, channel=CHANNEL, response_url=slack.response_url("a"))
    raw = body.encode()
    sent_at: list[float] = []
    chunks = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            sent_at.append(time.perf_counter())

    scope = events_scope([(k.lower().encode(), v.encode()) for k, v in sign(body).items()])
    try:
        await app(scope, receive, send)
        await slack.wait_responses("a", 1)
        assert sent_at and timed.called_at and timed.called_at[0] > sent_at[0]
    finally:
        await app.state.runtime.aclose()


async def test_command_work_waits_while_other_acks_are_pending(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: object
) -> None:
    """In a burst, acks go first: work starts once no other request awaits its ack."""
    timed = Timed(sandbox.transport())
    app = build_app(settings_for(slack, sandbox, redis_url), seats_transport=timed)
    release = asyncio.Event()

    async def slow_receive() -> dict[str, Any]:  # a request whose body is still on its way
        await release.wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def ignore(message: MutableMapping[str, Any]) -> None:
        pass

    try:
        pending = asyncio.create_task(app(events_scope([]), slow_receive, ignore))
        await asyncio.sleep(0.05)
        client = SlackClient(app, slack)
        response = await client.command(f"status {ALICE}")
        assert response[0].status_code == 200
        await asyncio.sleep(0.3)
        assert timed.called_at == []  # acked, but its work waits for the other ack
        released = time.perf_counter()
        release.set()
        await pending
        await slack.wait_responses(response[1], 1)
        assert timed.called_at and timed.called_at[0] >= released
        await client.http.aclose()
    finally:
        await app.state.runtime.aclose()
