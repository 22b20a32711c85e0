"""Parse `/seat` command text into a Command, or a ParseError with a message for people.

Slack sends the text with `should_escape: true`: its own entities arrive raw (`<@U1|ann>`,
`<mailto:a@b.c|a@b.c>`) and everything the person typed is HTML-escaped (`&amp;`, `&lt;`, `&gt;`).
So entities are recognised on the raw text first and only the rest is unescaped: typed `<@U1>`
can never pass for a real mention.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import ParseError
from bot.models import SEAT_UID_RE

MAX_TARGETS = 50
MAX_REASON = 500
MAX_AUDIT = 50
USAGE = (
    "Usage: `/seat revoke <email|@person|seat-uid> [more …] [--reason <text>]`, "
    "`/seat status <email|@person|seat-uid> …`, `/seat audit [n]`, `/seat help`"
)

_TOKEN = re.compile(r"<[^<>\s][^<>]*>|\S+")
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,20})(?:\|[^<>]*)?>$")
_MAILTO = re.compile(r"^<mailto:([^|<>]+)(?:\|[^<>]*)?>$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)

Kind = Literal["uid", "email", "mention"]


@dataclass(frozen=True)
class Target:
    kind: Kind
    value: str  # seat UID, lower-cased email, or Slack user ID

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.value.casefold())


@dataclass(frozen=True)
class Command:
    action: Literal["help", "revoke", "status", "audit"]
    targets: tuple[Target, ...] = ()
    reason: str | None = None
    count: int = 10
    notes: tuple[str, ...] = field(default=())


def unescape(text: str) -> str:
    """Undo Slack's escaping of the three characters it escapes (and only those)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clean(text: str) -> str:
    """Drop control and format characters (zero-width, bidi overrides) and squeeze spaces."""
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return " ".join(kept.split())


def _target(token: str) -> Target:
    if m := _MENTION.match(token):
        return Target("mention", m.group(1))
    token = m.group(1) if (m := _MAILTO.match(token)) else unescape(token)
    if "@" in token:
        email = token.strip()
        if len(email) > 254 or not _EMAIL.match(email):
            raise ParseError(f"`{_short(email)}` is not a valid email address.")
        return Target("email", email.lower())
    if SEAT_UID_RE.fullmatch(token) and any(ch.isdigit() for ch in token):
        return Target("uid", token)
    raise ParseError(f"`{_short(token)}` is not an email, a Slack mention or a seat UID.")


def _short(text: str, limit: int = 60) -> str:
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(text: str) -> Command:
    """Parse the raw text Slack sent after `/seat`."""
    words = text.strip().split(None, 1)
    if not words:
        raise ParseError("Tell me what to do.")
    verb, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
    if verb in ("help", "-h", "--help"):
        return Command("help")
    if verb == "audit":
        arg = clean(unescape(rest))
        if not arg:
            return Command("audit")
        if not re.fullmatch(r"[0-9]{1,3}", arg) or not 1 <= int(arg) <= MAX_AUDIT:
            raise ParseError(f"`/seat audit` takes a number from 1 to {MAX_AUDIT}.")
        return Command("audit", count=int(arg))
    if verb not in ("revoke", "status"):
        raise ParseError(f"Unknown command `{_short(unescape(verb), 30)}`.")

    reason: str | None = None
    found = re.search(r"(?:^|\s)--reason(?:\s+|=|$)", rest)
    if found:
        if verb == "status":
            raise ParseError("`--reason` only goes with `revoke`.")
        reason = clean(unescape(rest[found.end() :]))
        rest = rest[: found.start()]
        if not reason:
            raise ParseError("`--reason` needs some text after it.")
        if len(reason) > MAX_REASON:
            raise ParseError(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.")
    tokens = _TOKEN.findall(rest)
    if not tokens:
        raise ParseError(f"`/seat {verb}` needs at least one email, @person or seat UID.")
    for token in tokens:
        if token.startswith("--"):
            raise ParseError(f"Unknown option `{_short(unescape(token), 30)}`.")
    if len(tokens) > MAX_TARGETS * 2:
        raise ParseError(f"Too many targets: at most {MAX_TARGETS} at a time.")
    targets: dict[tuple[str, str], Target] = {}
    for token in tokens:
        target = _target(token)
        targets.setdefault(target.key, target)
    if len(targets) > MAX_TARGETS:
        raise ParseError(f"{len(targets)} targets: at most {MAX_TARGETS} at a time.")
    notes: tuple[str, ...] = ()
    if len(targets) < len(tokens):
        notes = (f"{len(tokens) - len(targets)} duplicate target(s) ignored.",)
    return Command(verb, tuple(targets.values()), reason, notes=notes)  # type: ignore[arg-type]
