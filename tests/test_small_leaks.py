"""Small leaks (issue 18 §5): passwords inside URL settings, CSV formulas, live mrkdwn on the App Home."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from bot.app.home import HomeOverview
from bot.config import Settings
from bot.domain.idle import DAY, IdleSeat, idle_csv
from bot.logs import redact_url
from bot.ops.startup import describe
from bot.slack.home import home_view

PROXY = "https://proxyuser:S3cr%40tPw@proxy.corp.example:8443/client/v4"


def test_url_settings_print_without_their_user_info() -> None:
    """The start-up line names CLOUDFLARE_BASE_URL without the proxy's login; the log redactor also
    knows the password (as written and decoded) for any other line that might carry it."""
    settings = Settings(
        _env_file=None,
        cloudflare_base_url=PROXY,
        slack_api_url="https://bot:Sl4ckPw@slack-proxy.example/api/",
        slack_signing_secret="x" * 32,
    )
    line = describe(settings, mode="http")
    assert "https://[redacted]@proxy.corp.example:8443/client/v4" in line
    assert "S3cr" not in line and "proxyuser" not in line
    assert {"S3cr%40tPw", "S3cr@tPw", "Sl4ckPw"} <= set(settings.secrets())
    assert redact_url("https://a@h/x") == "https://[redacted]@h/x"
    assert redact_url("https://h:1/x?y=@") == "https://h:1/x?y=@"  # an @ outside the authority stays


DANGEROUS = ["=1+1", "＝1+1", "﹦1", "＋1", "－1", "−1", "＠SUM(1)", "﹫x", " =1", "\u3000=1", "\t=1"]
DANGEROUS += ["\r=1", "\n=1", ";=1", ",=1", "+1", "-1", "@x", "|cmd", "%0A"]


@pytest.mark.parametrize("name", DANGEROUS)
def test_every_cell_a_spreadsheet_could_read_as_a_formula_is_defused(name: str) -> None:
    """OWASP's rule, completely: full-width and small forms, the minus sign, leading blanks, line
    breaks and separators get the ' prefix too."""
    seat = IdleSeat("s1", "a@x.io", name, None, "2025-01-01T00:00:00Z", 0.0)
    rows = list(csv.reader(io.StringIO(idle_csv([seat], now=40 * DAY).decode(), newline="")))
    assert rows[1][1] == "'" + name


@pytest.mark.parametrize("name", ["Alice", "Ørjan", "李雷", "O'Brien", "1st"])
def test_ordinary_cells_are_left_alone(name: str) -> None:
    seat = IdleSeat("s1", "a@x.io", name, None, "2025-01-01T00:00:00Z", 0.0)
    rows = list(csv.reader(io.StringIO(idle_csv([seat], now=40 * DAY).decode(), newline="")))
    assert rows[1][1] == name


def test_the_app_home_about_text_has_no_live_angle_brackets() -> None:
    """`<email|@person|seat-uid>` in mrkdwn is Slack's link syntax: it is written escaped."""
    view = home_view(HomeOverview(user="U1", is_admin=False, admins=("U1",), admin_groups=(), now=0.0))
    text = json.dumps(view, ensure_ascii=False)
    assert "&lt;email|@person|seat-uid&gt;" in text
    assert not re.search(r"<(?![@#!])[^>]*\|[^>]*>", "".join(_mrkdwn(view)))


def _mrkdwn(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str) else []
        return own + [t for v in node.values() for t in _mrkdwn(v)]
    if isinstance(node, list):
        return [t for v in node for t in _mrkdwn(v)]
    return []


def test_a_line_break_inside_a_cell_cannot_start_a_new_row() -> None:
    """A bare \\r is quoted like \\n, so no spreadsheet reads "=1" as the first cell of a new row."""
    seat = IdleSeat("s1", "a@x.io", "x\r=1", None, "2025-01-01T00:00:00Z", 0.0)
    assert b',"x\r=1",' in idle_csv([seat], now=40 * DAY)
