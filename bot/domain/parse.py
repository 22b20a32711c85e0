"""Parse `/seat` command text into a Command, or a ParseError with a message for people.

Slack sends the text with `should_escape: true`: its own entities arrive raw (`<@U1|ann>`,
`<mailto:a@b.c|a@b.c>`) and everything the person typed is HTML-escaped (`&amp;`, `&lt;`, `&gt;`).
So entities are recognised on the raw text first and only the rest is unescaped: typed `<@U1>`
can never pass for a real mention.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.domain.models import SEAT_UID_RE
from bot.domain.pasted import OPTION_RE, invisible_removed, not_a_person, split_targets, unknown_verb
from bot.errors import ParseError

MAX_TARGETS = 50
MAX_REASON = 500
MAX_AUDIT = 50
MAX_IDLE_DAYS = 3650
USAGE = (
    "Usage: `/seat revoke <email|@person|seat-uid> [more …] [--at <when>] [--reason <text>]`, "
    "`/seat status <email|@person|seat-uid> …`, `/seat idle [days] [--reason <text>]`, "
    "`/seat scheduled`, `/seat audit [n]`, `/seat sync`, `/seat help`"
)

_TOKEN = re.compile(r"<[^<>\s][^<>]*>|\S+")
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,20})(?:\|[^<>]*)?>$")
_MAILTO = re.compile(r"^<mailto:([^|<>]+)(?:\|[^<>]*)?>$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_UUID_START = re.compile(r"^[0-9a-f]{8}-[0-9a-f-]*$", re.I)  # a UUID, maybe cut short when pasted
_TYPED_HANDLE = re.compile(r"^@[\w.\-]+$")
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
    action: Literal["help", "revoke", "status", "audit", "idle", "sync", "scheduled"]
    targets: tuple[Target, ...] = ()
    reason: str | None = None
    count: int = 10
    notes: tuple[str, ...] = field(default=())
    days: int | None = None  # `idle [days]`; None = SEATBOT_IDLE_DAYS
    at: str | None = None  # `--at` as typed: when to run the revoke (checked by bot/app/schedule.py)


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
    if why := not_a_person(token):
        raise ParseError(why)
    token = m.group(1) if (m := _MAILTO.match(token)) else unescape(token)
    if _TYPED_HANDLE.match(token):
        raise ParseError(
            f"`{_short(token)}` is plain text, not a Slack mention: pick the person from Slack's @ menu "
            "(so it turns into a mention), or use their email."
        )
    if "@" in token:
        email = token.strip()
        if len(email) > 254 or not _EMAIL.match(email):
            raise ParseError(f"`{_short(email)}` is not a valid email address.")
        return Target("email", email.lower())
    if _UUID_START.match(token) and not _UUID.match(token):
        raise ParseError(
            f"`{_short(token)}` is not a whole seat UID: a seat UID has 36 characters "
            f"(like `f174e90a-fafe-4643-bbbc-4a0ed4fc8415`), this has {len(token)}. "
            "Paste the whole UID, or use the person's email."
        )
    if SEAT_UID_RE.fullmatch(token) and any(ch.isdigit() for ch in token):
        return Target("uid", token.lower())  # Cloudflare's seat UIDs are lower-case hex
    raise ParseError(f"`{_short(token)}` is not an email, a Slack mention or a seat UID.")


def _plain(token: str) -> str:
    """A raw token as the person typed it: Slack's mailto entities back to their address."""
    return unescape(re.sub(r"<mailto:[^|<>]+\|([^<>]*)>", r"\1", token))


def _names_a_person(token: str) -> bool:
    """An email or a mention: in free text (a reason) these are most likely meant as targets."""
    for piece in split_targets([token], is_email):
        if _MENTION.match(piece) or _MAILTO.match(piece) or is_email(unescape(piece)):
            return True
    return False


def is_email(text: str) -> bool:
    return len(text) <= 254 and bool(_EMAIL.match(text))


def _short(text: str, limit: int = 60) -> str:
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(text: str) -> str:
    reason = clean(unescape(text))
    if not reason:
        raise ParseError("`--reason` needs some text after it.")
    if len(reason) > MAX_REASON:
        raise ParseError(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.")
    return reason


def _at(text: str) -> str:
    at = clean(unescape(text))
    if not at:
        raise ParseError("`--at` needs a time: `2026-12-04T17:00`, `2026-12-04T17:00Z` or `in 2h`.")
    return at


@dataclass(frozen=True)
class Option:
    """A `--name <text>` option: which verbs take it and how its text becomes a Command field."""

    field: str
    verbs: tuple[str, ...]
    convert: Callable[[str], object]


# One row per option; the grammar below handles position, quoting and errors for all of them.
OPTIONS: dict[str, Option] = {
    "--reason": Option("reason", ("revoke", "idle"), _reason),
    "--at": Option("at", ("revoke",), _at),
}
_QUOTES = {'"': '"', "“": "”", "„": "“"}


def _option_at(token: str) -> str | None:
    m = OPTION_RE.match(token)
    return "--" + m.group(1).lower() if m else None


def _option_value(rest: str, start: int, *, option: str, targets_before: bool) -> tuple[str, int, str | None]:
    """An option's text from `start`: (text, where parsing goes on, a note for the card or None).

    Quoted ("…") text ends at its closing quote. Unquoted text runs to the next option or the end;
    when no target came before it, it also stops at the first email or mention, which are then the
    targets (`--reason left bob@example.com`). With targets before, an email inside the text stays
    text, and a note on the card says so.
    """
    body = rest[start:]
    offset = start + len(body) - len(body.lstrip())
    opener = rest[offset : offset + 1]
    if opener in _QUOTES:
        close = rest.find(_QUOTES[opener], offset + 1)
        if close < 0:
            raise ParseError('The quoted text after the option is never closed: add the closing `"`.')
        return rest[offset + 1 : close], close + 1, None
    stop, people = len(rest), []
    for m in _TOKEN.finditer(rest, offset):
        name = _option_at(unescape(m.group(0)))
        if name in OPTIONS:
            stop = m.start()
            break
        if _names_a_person(m.group(0)):
            if not targets_before:
                stop = m.start()
                break
            people.append(_plain(m.group(0)))
    note = None
    if people:
        note = (
            f"The text of `{option}` mentions {', '.join(people)}; that was not taken as a target. "
            f"To revoke it too, put it before `{option}`."
        )
    return rest[offset:stop], stop, note


def _split(verb: str, rest: str) -> tuple[list[str], dict[str, object], list[str]]:
    """Target tokens, option values by Command field, and notes: options may come anywhere."""
    tokens: list[str] = []
    values: dict[str, object] = {}
    notes: list[str] = []
    pos = 0
    while m := _TOKEN.search(rest, pos):
        token = m.group(0)
        name = _option_at(unescape(token))
        if name is None:
            tokens.append(token)
            pos = m.end()
            continue
        spec = OPTIONS.get(name)
        if spec is None:
            known = ", ".join(f"`{o}`" for o in OPTIONS)
            raise ParseError(f"Unknown option `{_short(unescape(token), 30)}` (known: {known}).")
        if verb not in spec.verbs:
            raise ParseError(f"`{name}` only goes with {' or '.join(f'`{v}`' for v in spec.verbs)}.")
        if spec.field in values:
            raise ParseError(f"`{name}` is given twice.")
        equals = unescape(token).find("=")
        start = m.start() + len(token) if equals < 0 else m.start() + len(token.split("=", 1)[0]) + 1
        text, pos, note = _option_value(rest, start, option=name, targets_before=bool(tokens))
        values[spec.field] = spec.convert(text)
        if note:
            notes.append(note)
    return tokens, values, notes


def _idle(rest: str) -> Command:
    """`idle [days] [--reason <text>]`: days is a whole number from 1 to MAX_IDLE_DAYS."""
    tokens, values, notes = _split("idle", rest)
    arg = clean(unescape(" ".join(tokens)))
    if not arg:
        return Command("idle", notes=tuple(notes), **values)  # type: ignore[arg-type]
    if not re.fullmatch(r"[0-9]{1,4}d?", arg) or not 1 <= int(arg.rstrip("d")) <= MAX_IDLE_DAYS:
        raise ParseError(f"`/seat idle` takes a number of days from 1 to {MAX_IDLE_DAYS}.")
    return Command("idle", notes=tuple(notes), days=int(arg.rstrip("d")), **values)  # type: ignore[arg-type]


def parse(text: str) -> Command:
    """Parse the raw text Slack sent after `/seat`."""
    words = invisible_removed(text).strip().split(None, 1)
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
    if verb == "idle":
        return _idle(rest)
    if verb in ("sync", "scheduled"):
        if clean(unescape(rest)):
            raise ParseError(f"`/seat {verb}` takes no arguments.")
        return Command(verb)  # type: ignore[arg-type]
    if verb not in ("revoke", "status"):
        raise ParseError(unknown_verb(clean(unescape(verb))))

    tokens, values, notes = _split(verb, rest)
    if not tokens:
        hint = ""
        if "reason" in values:
            hint = (
                " `--reason` takes the rest of the line as its text: put the targets before it, or quote "
                'the reason: `/seat revoke bob@example.com --reason "left"`.'
            )
        raise ParseError(f"`/seat {verb}` needs at least one email, @person or seat UID.{hint}")
    tokens = split_targets(tokens, is_email)
    if not tokens:
        raise ParseError(f"`/seat {verb}` needs at least one email, @person or seat UID.")
    if len(tokens) > MAX_TARGETS * 2:
        raise ParseError(f"Too many targets: at most {MAX_TARGETS} at a time.")
    targets: dict[tuple[str, str], Target] = {}
    for token in tokens:
        target = _target(token)
        targets.setdefault(target.key, target)
    if len(targets) > MAX_TARGETS:
        raise ParseError(f"{len(targets)} targets: at most {MAX_TARGETS} at a time.")
    if len(targets) < len(tokens):
        notes.insert(0, f"{len(tokens) - len(targets)} duplicate target(s) ignored.")
    return Command(verb, tuple(targets.values()), notes=tuple(notes), **values)  # type: ignore[arg-type]
