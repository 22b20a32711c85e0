"""What people paste into `/seat`: address-book lines, lists with commas, invisible characters, the
long dash a Mac or Slack makes of `--`, user-group mentions and near-miss verbs.

What is unambiguous is accepted (`Bob Builder <bob@example.com>`, `a@x.com, b@x.com`, `—reason`);
for the rest the error says what was recognised and what to type instead. Works on the raw text
Slack sends (its entities raw, typed text HTML-escaped): an entity is never built from typed text.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable

from bot.domain.help import NAMES

# Words people use for a verb: the answer names the verb (a guess is never acted on).
_SYNONYMS = {
    "remove": "revoke",
    "delete": "revoke",
    "disable": "revoke",
    "deprovision": "revoke",
    "offboard": "revoke",
    "kick": "revoke",
    "show": "status",
    "check": "status",
    "info": "status",
    "lookup": "status",
    "find": "status",
    "log": "audit",
    "logs": "audit",
    "history": "audit",
    "refresh": "sync",
    "free": "idle",
    "unused": "idle",
    "?": "help",
}

# The dashes a keyboard, a Mac or Slack's formatting make of `--`, and a single `-`, before an
# option word: `—reason` (em dash), `-reason` all mean the option.
OPTION_RE = re.compile(r"^(?:--|[-\u2012\u2013\u2014\u2015\u2212]-?)([A-Za-z][A-Za-z-]*)(=.*)?$", re.S)

_SUBTEAM = re.compile(r"^<!subteam\^([A-Z0-9]+)(?:\|([^<>]*))?>$")
_BROADCAST = re.compile(r"^<!(here|channel|everyone)(?:\|[^<>]*)?>$")
_CHANNEL = re.compile(r"^<#([CG][A-Z0-9]+)(?:\|([^<>]*))?>$")
# One target inside a token: a Slack entity, or text up to a comma or semicolon (an escaped
# `&lt;` keeps its semicolon).
_PIECE = re.compile(r"<[^<>]*>|(?:[^,;&<>]|&(?:lt|gt|amp);|&(?!(?:lt|gt|amp);))+")
_NAME_WORD = re.compile(r"^[\"'(]*[^\W\d_][\w.'’-]*[\"')]*$")
_OPENERS, _CLOSERS = "\"'([", "\"')].:"


def invisible_removed(text: str) -> str:
    """Without format characters (zero-width space and joiners, BOM, bidi marks): a pasted email
    that ends in a zero-width space is the email."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def unknown_verb(verb: str) -> str:
    """The answer to a verb that is not one: what was meant, when it can be told."""
    shown = verb if len(verb) <= 30 else verb[:29] + "…"
    if verb in ("schedule", "schedules", "later", "at"):
        return (
            f"Unknown command `{shown}`. To schedule a removal: `/seat revoke <who> --at <when>`; "
            "to list scheduled removals: `/seat scheduled`."
        )
    guess = _SYNONYMS.get(verb) or next(iter(difflib.get_close_matches(verb, NAMES, n=1, cutoff=0.6)), None)
    if guess:
        return f"Unknown command `{shown}`: did you mean `{guess}`? (`/seat help` lists them all.)"
    return f"Unknown command `{shown}`."


def not_a_person(token: str) -> str | None:
    """Why a Slack entity that is not a person cannot be a target, or None."""
    if m := _SUBTEAM.match(token):
        label = (m.group(2) or "").lstrip("@") or m.group(1)
        return (
            f"`@{label}` is a user group: groups are not expanded; name the people "
            "(an @mention or an email each)."
        )
    if m := _BROADCAST.match(token):
        return f"`@{m.group(1)}` is not a person: name the people (an @mention or an email each)."
    if m := _CHANNEL.match(token):
        return f"`#{m.group(2) or m.group(1)}` is a channel, not a person: name the people."
    return None


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _unwrapped(piece: str, is_email: Callable[[str], bool]) -> tuple[str, bool]:
    """A piece without the brackets, quotes or trailing dot pasted around an email: (piece, bracketed)."""
    inner = piece
    for opener, closer in (("&lt;", "&gt;"), *zip(_OPENERS, _CLOSERS[:4], strict=True)):
        if inner.startswith(opener) and inner.endswith(closer) and len(inner) > len(opener) + len(closer):
            inner = inner[len(opener) : -len(closer)]
    inner = inner.lstrip(_OPENERS).rstrip(_CLOSERS)
    if inner != piece and is_email(_unescape(inner)):
        return inner, piece.startswith("&lt;") or piece.startswith("<")
    return piece, False


def split_targets(tokens: Iterable[str], is_email: Callable[[str], bool]) -> list[str]:
    """Raw target tokens → one raw token per target.

    Commas and semicolons separate targets; brackets, quotes and a trailing dot around an email go;
    the words of a display name before an angle-bracketed email (`Bob Builder <bob@example.com>`)
    go; a bracket around Slack's own mailto link goes.
    """
    pieces: list[tuple[str, bool]] = []  # (piece, an email that was in angle brackets)
    for token in tokens:
        found = _PIECE.findall(token)
        for i, piece in enumerate(found):
            if piece in ("&lt;", "&gt;", "&lt;&gt;"):
                continue  # the brackets around Slack's mailto link: `&lt;<mailto:…>&gt;`
            if piece.startswith("<"):
                bracketed = i > 0 and found[i - 1].endswith("&lt;") and piece.startswith("<mailto:")
                pieces.append((piece, bracketed))
                continue
            pieces.append(_unwrapped(piece, is_email))
    kept: list[str] = []
    for i, (piece, _) in enumerate(pieces):
        following = next((p for p in pieces[i + 1 :] if not _is_name_word(p[0])), None)
        if _is_name_word(piece) and following is not None and following[1]:
            continue  # part of a display name: `Bob Builder <bob@example.com>`
        kept.append(piece)
    return kept


def _is_name_word(piece: str) -> bool:
    return not piece.startswith("<") and bool(_NAME_WORD.match(_unescape(piece)))
