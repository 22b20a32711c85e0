"""Slack's side of the Workflow Builder step `revoke_seat` (Bolt's `app.function`).

function_executed → the confirmation card, posted with chat.postMessage in the step's `channel`
(with the workflow token, as Slack asks of a step) → an admin's click on it runs the same flow as a
`/seat revoke` card → functions.completeSuccess with the outputs, or functions.completeError on
cancel, failure or expiry. Works the same over HTTP and Socket Mode: both feed this Bolt app.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.app.flow import SeatFlow
from bot.app.workflow import CALLBACK_ID, Completion, Step, WorkflowSteps
from bot.logs import redact, request_scope
from bot.slack import blocks, kit, replies
from bot.slack.clicks import oops, read_click
from bot.slack.delivery import Responder, deliver, send

log = logging.getLogger("seatbot.workflow")
ACTIONS = {"seat_confirm": "seat_step_confirm", "seat_cancel": "seat_step_cancel"}


def step_card(message: blocks.Message) -> blocks.Message:
    """A revoke card whose buttons belong to a workflow step (their clicks also complete the step)."""
    card: blocks.Message = json.loads(json.dumps(message))
    for block in card["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") in ACTIONS:
                element["action_id"] = ACTIONS[element["action_id"]]
    note = kit.context(":zap: From a Workflow Builder step: it continues once an admin decides here.")
    card["blocks"].insert(-1, note)
    return card


def register_workflow_step(
    app: AsyncApp,
    *,
    steps: WorkflowSteps,
    flow: SeatFlow,
    client: AsyncWebClient,
    responder: Responder,
) -> None:
    async def complete(done: Completion) -> None:
        """End the step, once; the workflow token when Slack gave one, else the bot token."""
        token = {"token": done.step.token} if done.step.token else {}
        try:
            if done.outputs is not None:
                await client.functions_completeSuccess(
                    function_execution_id=done.step.execution_id, outputs=done.outputs, **token
                )
            else:
                error = redact(done.error or "failed")
                await client.functions_completeError(
                    function_execution_id=done.step.execution_id, error=error, **token
                )
        except SlackApiError as exc:
            log.error("could not complete workflow step: %s", exc.response.get("error"))

    async def on_expired(done: Completion) -> None:
        await complete(done)
        if done.step.ts:
            text = f":hourglass: Expired: nobody confirmed in time, nothing was changed. {done.error or ''}"
            message = kit.compose(text, [kit.section(kit.esc(text))])
            try:
                await client.chat_update(
                    channel=done.step.channel, ts=done.step.ts, text=message["text"], blocks=message["blocks"]
                )
            except SlackApiError as exc:
                log.warning("could not mark the expired card: %s", exc.response.get("error"))

    steps.on_expired = on_expired

    @app.function(CALLBACK_ID)
    async def revoke_seat(inputs: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        # Bolt acknowledged the event already; Slack gives the step its own token in `context`.
        with request_scope():
            execution = str(context.function_execution_id or "")
            token = context.function_bot_access_token
            started = await steps.start(execution_id=execution, token=token, inputs=inputs or {})
            if started.done is not None:
                await complete(started.done)
                return
            if started.card is None:
                return  # Slack's retry (or a replay) of an execution that has its card already
            pending = started.card.pending
            message = step_card(blocks.card(started.card))
            # Stored before the card is posted: a click that lands at once must find the step to complete.
            await steps.remember(pending, Step(execution, pending.channel, token))
            try:
                posted = await client.chat_postMessage(
                    channel=pending.channel, text=message["text"], blocks=message["blocks"]
                )
            except SlackApiError as exc:
                await steps.drop(pending.id)
                why = exc.response.get("error")
                hint = " (invite the bot with /invite)" if why == "not_in_channel" else ""
                step = Step(execution, pending.channel, token)
                await complete(
                    Completion(step, error=f"Could not post the card in <#{pending.channel}>: {why}{hint}")
                )
                return
            await steps.posted(pending.id, ts=str(posted.get("ts") or "") or None)

    async def on_click(action: Literal["confirm", "cancel"], body: dict[str, Any]) -> None:
        click = read_click(body)
        respond = responder.to(click.response_url, channel=click.channel, user=click.user)
        with request_scope() as rid:
            try:
                reply = await flow.click(action=action, pending_id=click.value, user=click.user)
                metrics.click(f"step_{action}", reply)
                await deliver(respond, replies.for_click(reply))
                done = await steps.after_click(click.value, reply)
                if done is not None:
                    await complete(done)
            except Exception:
                log.exception("workflow step click failed")
                metrics.click(f"step_{action}", "error")
                await send(respond, oops(rid), response_type="ephemeral", replace_original=False)

    @app.action("seat_step_confirm")
    async def seat_step_confirm(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await on_click("confirm", body)

    @app.action("seat_step_cancel")
    async def seat_step_cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await on_click("cancel", body)
