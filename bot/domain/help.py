"""`/seat help`: one line per verb with an example, who may use it, and where the full guide is.

One table, so the help card, the near-miss verb hints (bot/domain/pasted.py) and the test of manifest.yml's
usage hint all list the same verbs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    name: str
    example: str  # typed as is, it works on the demo account
    what: str
    admins_only: bool = True


VERBS = (
    Verb(
        "revoke",
        "/seat revoke bob@example.com --reason left",
        "a confirmation card; one click removes the seat",
    ),
    Verb(
        "revoke",
        "/seat revoke bob@example.com --at 2026-12-18T17:00 --reason last day",
        "the same card; confirming schedules the removal",
    ),
    Verb("status", "/seat status bob@example.com", "seat UID, access/gateway, last sign-in; changes nothing"),
    Verb(
        "idle", "/seat idle 60 --reason monthly review", "seats unused 60+ days, a CSV, a button to free them"
    ),
    Verb("scheduled", "/seat scheduled", "scheduled removals, each with a Cancel button"),
    Verb("audit", "/seat audit 20", "the last 20 audit events"),
    Verb("sync", "/seat sync", "refresh the seat directory now"),
    Verb("help", "/seat help", "this card, only to you", admins_only=False),
)
NAMES = tuple(dict.fromkeys(v.name for v in VERBS))
TARGETS = (
    "Targets: an email, an @mention picked from Slack's menu, or a whole seat UID; up to 50, "
    "separated by spaces or commas."
)
GUIDE = "the *Commands* section of `README.md` in the seat bot's repository"
