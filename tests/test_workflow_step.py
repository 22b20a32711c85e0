"""The Workflow Builder step `revoke_seat`: signed function_executed events, real Redis, fake Slack.

Slack's shapes follow bolt-python's own function tests: the event carries the inputs, the
function_execution_id and a short-lived workflow token (`bot_access_token`, xwfp-…).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl

import pytest
import redis.asyncio as aredis
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.app.workflow import STEP
from bot.devtools.sandbox import Sandbox
from bot.slack.wiring import build_slack
from tests.support.fake_slack import FakeSlack
from tests.support.flow import audit_events
from tests.support.harness import (
    ADMIN,
    ADMIN2,
    ALICE,
    CHANNEL,
    OUTSIDER,
    action_body,
    all_text,
    build,
    button,
    settings_for,
    sign,
)
from tests.support.workflow import WORKFLOW_TOKEN, completion, function_executed, start_step, step_card


async def test_confirm_completes_the_step_with_outputs(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """function_executed → card in the channel → a non-admin click does nothing → an admin's
    confirm PATCHes and completes the step with the outputs, using the workflow token."""
    bot = build(slack, sandbox, redis_url)
    try:
        execution = await start_step(bot, target=ALICE, reason="offboarding form", requester=OUTSIDER)
        card = await step_card(slack)
        assert card["channel"] == CHANNEL and ALICE in json.dumps(card["blocks"])
        value = button(card, "seat_step_confirm")["value"]
        await bot.click("seat_step_confirm", value, user=OUTSIDER)  # the submitter is no admin
        await bot.click("seat_step_confirm", "0" * 32, user=ADMIN)  # a forged id: nothing
        assert slack.completions == [] and sandbox.patches == []
        _, key = await bot.click("seat_step_confirm", value, user=ADMIN)
        method, done = await completion(slack, execution)
        assert method == "functions.completeSuccess" and done["token"] == WORKFLOW_TOKEN
        outputs = done["outputs"]
        assert outputs["outcome"] == "revoked" and outputs["email"] == ALICE
        assert outputs["access_seat"] is False and outputs["gateway_seat"] is False and outputs["updated_at"]
        assert len(sandbox.patches) == 1
        (outcome,) = await slack.wait_responses(key, 1)
        assert "revoked" in outcome["text"]
        await bot.click("seat_step_confirm", value, user=ADMIN2)  # a second click: no second completion
        assert len(slack.completions) == 1 and len(sandbox.patches) == 1
    finally:
        await bot.aclose()


@pytest.mark.parametrize("post_answer_delay", [0.0, 0.5], ids=["card posted", "card still being posted"])
async def test_cancel_completes_with_an_error(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis, post_answer_delay: float
) -> None:
    """An admin's cancel ends the step with functions.completeError and PATCHes nothing, even when it
    lands while Slack has not yet answered the card's chat.postMessage."""
    slack.post_answer_delay = post_answer_delay  # the card shows in the channel; the bot has not heard back
    bot = build(slack, sandbox, redis_url)
    try:
        execution = await start_step(bot, target=ALICE)
        value = button(await step_card(slack), "seat_step_cancel")["value"]
        await bot.click("seat_step_cancel", value, user=ADMIN)
        method, done = await completion(slack, execution)
        assert method == "functions.completeError" and "Cancelled" in done["error"]
        assert sandbox.patches == []
        assert not await redis_client.exists(STEP + value)  # taken once; noting the ts did not revive it
    finally:
        await bot.aclose()


async def test_expiry_completes_with_an_error_and_marks_the_card(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Nobody clicks within the card's TTL: the job runner ends the step with an error, once."""
    bot = build(slack, sandbox, redis_url, seatbot_confirm_ttl_seconds=1)
    await bot.app.state.runtime.start_jobs()
    try:
        execution = await start_step(bot, target=ALICE)
        value = button(await step_card(slack), "seat_step_confirm")["value"]
        method, done = await completion(slack, execution, timeout=8)
        assert method == "functions.completeError" and "expired" in done["error"]
        await slack.wait_for(lambda: bool(slack.updates))
        _, key = await bot.click("seat_step_confirm", value, user=ADMIN)  # too late
        (late,) = await slack.wait_responses(key, 1)
        assert "expired" in late["text"] and sandbox.patches == [] and len(slack.completions) == 1
        assert await redis_client.keys("{seatbot}:step:*") == []  # the workflow token is gone with the card
    finally:
        await bot.aclose()


@pytest.mark.parametrize("named", ["", ADMIN, OUTSIDER], ids=["no requester", "an admin", "a non-admin"])
async def test_two_person_rule_needs_two_admins_whatever_the_workflow_names(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis, named: str
) -> None:
    """SEATBOT_TWO_PERSON: the `requester` input (empty, another admin, a non-admin) counts for nothing.
    The first admin's Revoke approves, the same admin again is refused, a second admin's removes;
    both names are on the outcome and in the audit, the named requester apart, as a claim."""
    bot = build(slack, sandbox, redis_url, seatbot_two_person=True)
    try:
        execution = await start_step(bot, target=ALICE, requester=named)
        card = await step_card(slack)
        assert "needs two admins" in all_text(card)
        value = button(card, "seat_step_confirm")["value"]
        _, key = await bot.click("seat_step_confirm", value, user=ADMIN)
        (approved,) = await slack.wait_responses(key, 1)
        assert f"Approved by <@{ADMIN}>" in approved["text"] and approved["response_type"] == "in_channel"
        assert approved["replace_original"] is False  # the card stays for the second admin
        _, key = await bot.click("seat_step_confirm", value, user=ADMIN)
        (again,) = await slack.wait_responses(key, 1)
        assert "you approved this card" in again["text"]
        await bot.click("seat_step_confirm", value, user=OUTSIDER)
        assert sandbox.patches == [] and slack.completions == []
        _, key = await bot.click("seat_step_confirm", value, user=ADMIN2)
        method, _ = await completion(slack, execution)
        assert method == "functions.completeSuccess" and len(sandbox.patches) == 1
        (outcome,) = await slack.wait_responses(key, 1)
        text = all_text(outcome)
        assert f"approved by <@{ADMIN}>" in text and f"confirmed by <@{ADMIN2}>" in text
        assert ("not verified" in text) == bool(named)
        events = {e["event"]: e for e in await audit_events(redis_client)}
        assert events["requested"]["user"] == "workflow" and events["requested"].get("named_requester") == (
            named or None
        )
        assert events["approved"]["user"] == ADMIN
        assert events["confirmed"]["user"] == ADMIN2 and events["confirmed"]["approved_by"] == ADMIN
        assert events["succeeded"]["user"] == ADMIN2 and events["succeeded"]["approved_by"] == ADMIN
    finally:
        await bot.aclose()


async def test_a_seat_already_gone_or_a_bad_input_completes_at_once(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """No seat to remove: success with outcome already_removed and no card; no target: an error."""
    bot = build(slack, sandbox, redis_url)
    try:
        uid = next(u for u, rec in sandbox.users.items() if rec["email"] == ALICE)
        sandbox.users[uid].update(access_seat=False, gateway_seat=False)
        gone = await start_step(bot, target=ALICE)
        method, done = await completion(slack, gone)
        assert method == "functions.completeSuccess" and done["outputs"]["outcome"] == "already_removed"
        bad = await start_step(bot)
        method, done = await completion(slack, bad)
        assert method == "functions.completeError" and "exactly one of" in done["error"]
        assert slack.posts == [] and sandbox.patches == []
    finally:
        await bot.aclose()


async def test_the_step_works_over_socket_mode(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """The Socket Mode app (no signatures) runs the same step: event → card → confirm → completeSuccess."""
    settings = settings_for(slack, sandbox, redis_url, slack_app_token="xapp-test-app-token")
    runtime, app = build_slack(settings, verify_signatures=False, seats_transport=sandbox.transport())
    try:
        event = function_executed({"channel": CHANNEL, "target": ALICE}, "FxSock")
        response = await app.async_dispatch(AsyncBoltRequest(body=event, mode="socket_mode"))
        assert response.status == 200
        value = button(await step_card(slack), "seat_step_confirm")["value"]
        click = action_body(
            "seat_step_confirm", value, user=ADMIN, channel=CHANNEL, response_url=slack.response_url("s")
        )
        payload = json.loads(dict(parse_qsl(click))["payload"])
        await app.async_dispatch(AsyncBoltRequest(body=payload, mode="socket_mode"))
        method, done = await completion(slack, "FxSock")
        assert method == "functions.completeSuccess" and done["outputs"]["outcome"] == "revoked"
    finally:
        await runtime.aclose()


async def test_a_replayed_function_executed_gets_one_card_and_one_removal(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str
) -> None:
    """The same signed function_executed 4 times (Slack's retries carry X-Slack-Retry-Num; a replay
    does not), two of them at once: one card, one completion, one PATCH (issue 18 §4)."""
    bot = build(slack, sandbox, redis_url)
    try:
        body = json.dumps(function_executed({"channel": CHANNEL, "target": ALICE}, "FxReplayed"))
        signed = {**sign(body), "Content-Type": "application/json"}
        retry = {**signed, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        first, second = await asyncio.gather(bot.post(body, signed), bot.post(body, signed))
        third, fourth = await bot.post(body, retry), await bot.post(body, signed)
        assert {r.status_code for r in (first, second, third, fourth)} == {200}
        value = button(await step_card(slack), "seat_step_confirm")["value"]
        await bot.click("seat_step_confirm", value, user=ADMIN)
        method, _ = await completion(slack, "FxReplayed")
        assert method == "functions.completeSuccess"
        cards = [p for p in slack.posts if "seat_step_confirm" in json.dumps(p.get("blocks"))]
        assert len(cards) == 1 and len(sandbox.patches) == 1
    finally:
        await bot.aclose()
