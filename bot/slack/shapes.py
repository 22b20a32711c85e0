"""The shapes of a signed Slack body that Bolt and the listeners may rely on, checked before either.

A signature says who sent a body, not that it is well-formed: a body signed with the secret (or a
Slack change) can hold a string where an object belongs, or nest a thousand levels deep. Bolt's
context builders and the listeners index into these fields, so each field they read has the type
Slack documents checked here, once, and anything else is a 400 at the edge, never a 500 from Bolt or a
listener that fails after the ack (a workflow step then never completes). tests/test_edge_fuzz.py
mutates real bodies with hypothesis to find the next field.
"""

from __future__ import annotations

import json
from typing import Any

from bot.errors import SeatbotError

# Slack's deepest real payloads (rich text inside blocks inside a message inside a view) are about
# 15 levels deep; json.loads stops near 1,000 with RecursionError, and Bolt re-encodes what we pass.
MAX_DEPTH = 64
NONE = type(None)


class Malformed(SeatbotError):
    """A signed body without the shape Slack documents: the edge answers 400 with this reason."""


def load_object(text: str, what: str) -> dict[str, Any]:
    """`text` as a JSON object of bounded depth, or Malformed."""
    if _too_deep(text):
        raise Malformed(f"{what} is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def _too_deep(text: str) -> bool:
    """Bracket depth outside strings, without parsing (so a deep body never reaches the parser)."""
    depth, in_string, escaped = 0, False, False
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _field(obj: dict[str, Any], name: str, kinds: tuple[type, ...], where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kinds):
        raise Malformed(f"{where}{name} is not {' or '.join(_NAMES[k] for k in kinds)}")
    return value


_NAMES = {str: "a string", dict: "an object", list: "a list", bool: "true/false", NONE: "absent"}
# Fields Bolt's context builders read wherever they appear (slack_bolt/request/internals.py), and
# the nested objects they look inside.
_IDS: tuple[str, ...] = ("team_id", "user_id", "channel_id", "enterprise_id", "thread_ts")
_IDS += ("function_execution_id", "bot_access_token", "api_app_id", "response_url", "trigger_id")
_NESTED: tuple[str, ...] = ("event", "message", "previous_message", "item", "assistant_thread")
_NESTED += ("function_data", "view", "container", "state")


def _common(obj: dict[str, Any], where: str = "") -> None:
    for name in ("team", "enterprise", "channel", "user"):
        value = _field(obj, name, (str, dict, NONE), where)
        if isinstance(value, dict):
            _field(value, "id", (str, NONE), f"{where}{name}.")
            _field(value, "team_id", (str, NONE), f"{where}{name}.")
            _field(value, "enterprise_id", (str, NONE), f"{where}{name}.")
    for name in _IDS:
        _field(obj, name, (str, NONE), where)
    _field(obj, "is_enterprise_install", (bool, NONE), where)
    _field(obj, "is_ext_shared_channel", (bool, NONE), where)
    auths = _field(obj, "authorizations", (list, NONE), where)
    for auth in auths or ():
        if not isinstance(auth, dict):
            raise Malformed(f"{where}authorizations holds a non-object")
        _common(auth, f"{where}authorizations[].")
    for name in _NESTED:
        nested = _field(obj, name, (dict, NONE), where)
        if nested is not None:
            _common(nested, f"{where}{name}.")
    _field(obj, "execution_id", (str, NONE), where)
    _field(obj, "inputs", (dict, NONE), where)
    _field(obj, "app_installed_team_id", (str, NONE), where)


def check_interaction(payload: dict[str, Any]) -> None:
    """An interaction's `payload`: common fields, and what click listeners read of block_actions."""
    _field(payload, "type", (str,), "")
    _common(payload)
    if payload["type"] != "block_actions":
        return  # other interaction types reach Bolt as they are (we handle none of them)
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise Malformed("block_actions without a user id")
    _field(payload, "channel", (dict, NONE), "")  # an interaction's channel is an object
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
        raise Malformed("block_actions without a list of actions")
    for action in actions:
        _field(action, "action_id", (str,), "actions[].")
        _field(action, "value", (str, NONE), "actions[].")
        _field(action, "block_id", (str, NONE), "actions[].")


def check_json_body(body: dict[str, Any]) -> None:
    """An Events API body (the JSON shape): the envelope and the events the listeners take."""
    kind = _field(body, "type", (str,), "")
    _common(body)
    if kind == "url_verification":
        _field(body, "challenge", (str,), "")
    if kind != "event_callback":
        return
    event = body.get("event")
    if not isinstance(event, dict):
        raise Malformed("event_callback without an event object")
    etype = _field(event, "type", (str,), "event.")
    if etype == "function_executed":
        execution = _field(event, "function_execution_id", (str,), "event.")
        if not execution:
            raise Malformed("function_executed without a function_execution_id")
        _field(event, "inputs", (dict,), "event.")
        function = _field(event, "function", (dict,), "event.")
        _field(function, "callback_id", (str,), "event.function.")
    elif etype == "app_home_opened":
        _field(event, "user", (str,), "event.")
        _field(event, "tab", (str, NONE), "event.")
