"""The Workflow Builder step as Slack drives it: signed `function_executed` events, the card it posts,
the step's completion (shapes follow bolt-python's own function tests)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from slack_sdk.signature import SignatureVerifier

from tests.support.fake_slack import FakeSlack
from tests.support.harness import CHANNEL, SIGNING_SECRET, SlackClient

WORKFLOW_TOKEN = "xwfp-test-workflow-token-0123456789"
_ids = itertools.count(1)


def function_executed(inputs: dict[str, Any], execution: str) -> dict[str, Any]:
    """An Events API `function_executed` callback for our step, as Slack sends it."""
    return {
        "token": "legacy-verification-token",
        "team_id": "T1",
        "api_app_id": "A1",
        "event": {
            "type": "function_executed",
            "function": {
                "id": "Fn1",
                "callback_id": "revoke_seat",
                "title": "Remove Zero Trust seat",
                "description": "…",
                "type": "app",
                "input_parameters": [],
                "output_parameters": [],
                "app_id": "A1",
                "date_updated": 1700000000,
            },
            "inputs": inputs,
            "function_execution_id": execution,
            "workflow_execution_id": "Wx1",
            "event_ts": f"{time.time():.6f}",
            "bot_access_token": WORKFLOW_TOKEN,
        },
        "type": "event_callback",
        "event_id": f"Ev{next(_ids)}",
        "event_time": int(time.time()),
    }


async def start_step(bot: SlackClient, **inputs: str) -> str:
    """Send a signed function_executed; returns its execution id."""
    execution = f"Fx{next(_ids)}"
    body = json.dumps(function_executed({"channel": CHANNEL, **inputs}, execution))
    ts = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": str(
            SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
        ),
        "Content-Type": "application/json",
    }
    response = await bot.post(body, headers)
    assert response.status_code == 200
    return execution


async def step_card(slack: FakeSlack) -> dict[str, Any]:
    await slack.wait_for(lambda: any("seat_step_confirm" in json.dumps(p.get("blocks")) for p in slack.posts))
    post = next(p for p in slack.posts if "seat_step_confirm" in json.dumps(p.get("blocks")))
    raw = post["blocks"]
    return {**post, "blocks": json.loads(raw) if isinstance(raw, str) else raw}


async def completion(slack: FakeSlack, execution: str, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
    def mine() -> list[tuple[str, dict[str, Any]]]:
        return [c for c in slack.completions if c[1]["function_execution_id"] == execution]

    await slack.wait_for(lambda: bool(mine()), timeout)
    (found,) = mine()
    return found
