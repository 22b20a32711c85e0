"""manifest.yml against Slack's official app-manifest schema, and against what the code uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import yaml

from tests.support.servers import SLACK_MANIFEST_SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def manifest() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load((ROOT / "manifest.yml").read_text()))


def test_manifest_matches_slacks_schema() -> None:
    """The manifest validates against Slack's official JSON Schema."""
    if not SLACK_MANIFEST_SCHEMA.exists():
        pytest.skip("../shared/slack/manifest.schema.json is absent (a user's clone)")
    schema = json.loads(SLACK_MANIFEST_SCHEMA.read_text())
    jsonschema.validate(manifest(), schema)
    broken = manifest()
    broken["features"]["slash_commands"][0]["should_escape"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_manifest_declares_exactly_what_the_bot_uses() -> None:
    """/seat escapes text, interactivity is on, and the bot scopes are exactly the ones used."""
    m = manifest()
    (command,) = m["features"]["slash_commands"]
    assert command["command"] == "/seat" and command["should_escape"] is True
    assert command["description"] and command["usage_hint"]
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert command["url"].endswith("/slack/events")
    assert m["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert sorted(m["oauth_config"]["scopes"]["bot"]) == sorted(
        ["commands", "chat:write", "users:read", "users:read.email", "usergroups:read", "files:write"]
    )
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert m["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened", "function_executed"]
    assert m["settings"]["event_subscriptions"]["request_url"].endswith("/slack/events")


def test_procfile_has_one_process_type() -> None:
    """One process type (`start` picks HTTP or Socket Mode), so a Procfile runner can start it whole."""
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert {name: command.strip() for name, command in lines.items()} == {"web": "python -m bot start"}


def test_manifest_declares_the_workflow_step() -> None:
    """`revoke_seat`: the inputs the step reads, the outputs it completes with, an org-ready remote app."""
    from bot.app.workflow import outputs

    m = manifest()
    step = m["functions"]["revoke_seat"]
    assert set(step["input_parameters"]) == {"target", "user", "reason", "channel", "requester"}
    assert step["input_parameters"]["channel"]["type"] == "slack#/types/channel_id"
    assert step["input_parameters"]["channel"]["is_required"] is True
    assert step["input_parameters"]["user"]["type"] == step["input_parameters"]["requester"]["type"]
    from bot.domain.models import PendingTarget

    produced = outputs("revoked", PendingTarget(label="x", seat_uid="1"))
    assert set(step["output_parameters"]) == set(produced)
    kinds = {"string": str, "boolean": bool}
    for name, value in produced.items():
        assert isinstance(value, kinds[step["output_parameters"][name]["type"]]), name
    assert m["settings"]["org_deploy_enabled"] is True and m["settings"]["function_runtime"] == "remote"
