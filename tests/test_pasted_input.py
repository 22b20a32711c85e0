"""What people paste (issue 21 items 1-3): signed commands through the real app, real Redis, the sandbox,
and the shell as a newcomer pipes into it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.devtools.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ALICE, SlackClient, all_text, button, card_for
from tests.support.servers import run_bot

BOB = "bob@example.com"


def _uid(sandbox: Sandbox, email: str) -> str:
    return str(next(u["seat_uid"] for u in sandbox.users.values() if u["email"] == email))


def _mailto(email: str) -> str:
    """An email as Slack sends it in a slash command: its own link entity."""
    return f"<mailto:{email}|{email}>"


def _card_emails(message: dict[str, object]) -> list[str]:
    dialog = button(message, "seat_confirm")["confirm"]["text"]["text"]
    return sorted(dialog.split(": ", 1)[1].split(", "))


# -- item 1: seat UIDs ------------------------------------------------------------------------------


async def test_an_upper_case_seat_uid_finds_its_holder(bot: SlackClient, sandbox: Sandbox) -> None:
    """Seat UIDs match whatever their case: the upper-case form finds alice, as the lower-case one does."""
    uid = _uid(sandbox, ALICE)
    message = await card_for(bot, f"status {uid.upper()}")
    text = all_text(message)
    assert "Seat status (1 found)" in message["text"] and ALICE in text and uid in text
    assert "no Zero Trust user holds" not in text
    card = await card_for(bot, f"revoke {uid.upper()}")
    assert _card_emails(card) == [ALICE]


@pytest.mark.parametrize("cut", [23, 35, 8])
async def test_a_truncated_seat_uid_is_answered_as_one(bot: SlackClient, sandbox: Sandbox, cut: int) -> None:
    """Part of a UID (cut short when pasted) is said to be part of one, and nothing is asked of Cloudflare."""
    part = _uid(sandbox, ALICE)[:cut] + ("-" if cut == 8 else "")
    message = await card_for(bot, f"status {part}")
    text = all_text(message)
    assert f"`{part}` is not a whole seat UID" in text and "36 characters" in text, text
    assert "no Zero Trust user holds" not in text
    assert sandbox.requests == []


# -- item 2: pasted shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "emails"),
    [
        (f"revoke &lt;{_mailto(ALICE)}&gt;", [ALICE]),  # `<alice@example.com>`
        (f"revoke Bob Builder &lt;{_mailto(BOB)}&gt;", [BOB]),  # an address-book line
        (f"revoke Bob Builder &lt;{_mailto(BOB)}&gt;, Alice Example &lt;{_mailto(ALICE)}&gt;", [ALICE, BOB]),
        (f"revoke {_mailto(ALICE)}, {_mailto(BOB)}", [ALICE, BOB]),  # `a@x.com, b@x.com`
        (f"revoke {_mailto(ALICE)},{_mailto(BOB)}", [ALICE, BOB]),
        (f"revoke {_mailto(ALICE)}; {_mailto(BOB)}", [ALICE, BOB]),
        (f"revoke {ALICE}\u200b", [ALICE]),  # a zero-width space pasted with it
        (f"revoke \u2060{_mailto(BOB)}\ufeff", [BOB]),
    ],
)
async def test_unambiguous_pastes_make_the_card(
    bot: SlackClient, sandbox: Sandbox, text: str, emails: list[str]
) -> None:
    """Angle-bracketed and display-name emails, commas and invisible characters are the people named."""
    message = await card_for(bot, text)
    assert _card_emails(message) == sorted(emails), all_text(message)


@pytest.mark.parametrize("dash", ["\u2014", "\u2013", "-", "\u2014-"])
async def test_a_long_or_single_dash_before_an_option_word_is_the_option(bot: SlackClient, dash: str) -> None:
    """`—reason` (what a Mac or Slack makes of `--reason`), the en dash and `-reason` mean `--reason`."""
    message = await card_for(bot, f"revoke {_mailto(BOB)} {dash}reason left the company")
    assert _card_emails(message) == [BOB]
    assert "reason: left the company" in all_text(message)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "status <!subteam^S0123ABC|@it-team>",
            "`@it-team` is a user group: groups are not expanded; name the people",
        ),
        ("revoke <!subteam^S0123ABC>", "is a user group: groups are not expanded; name the people"),
        ("revoke <!here>", "`@here` is not a person: name the people"),
        ("revok bob@example.com", "Unknown command `revok`: did you mean `revoke`?"),
        ("remove bob@example.com", "Unknown command `remove`: did you mean `revoke`?"),
        ("stats bob@example.com", "did you mean `status`?"),
        ("schedule bob@example.com", "`/seat revoke <who> --at <when>`"),
        ("schedule bob@example.com", "`/seat scheduled`"),
    ],
)
async def test_what_is_not_a_target_says_what_to_type(
    bot: SlackClient, sandbox: Sandbox, text: str, needle: str
) -> None:
    """A user group, @here or a near-miss verb: the answer names what was recognised; no Cloudflare call."""
    message = await card_for(bot, text)
    assert needle in message["text"].replace("&lt;", "<").replace("&gt;", ">"), all_text(message)
    assert message["response_type"] == "ephemeral" and sandbox.requests == []


def test_the_shell_takes_an_address_book_line_and_a_comma_list(tmp_path: Path) -> None:
    """Typed into the shell as copied from a mail client: the card names Bob and Carol, then Alice."""
    script = (
        "/seat revoke Bob Builder <bob@example.com>, Carol Danvers <carol@example.com> —reason left\n"
        "/seat status <alice@example.com>\n"
    )
    result = run_bot("shell", cwd=tmp_path, stdin=script)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "== Revoke 2 Zero Trust seats? ==" in out and "reason: left" in out, out
    assert "*bob@example.com* (Bob Builder)" in out and "*carol@example.com* (Carol Danvers)" in out
    assert "== Seat status (1 found) ==" in out and "*alice@example.com* (Alice Example)" in out


# -- item 3: one person, one line -------------------------------------------------------------------


async def test_status_lists_each_person_once(bot: SlackClient, slack: FakeSlack, sandbox: Sandbox) -> None:
    """A mention twice and the same person's email: one line, and a note saying what was merged."""
    slack.emails["U0BOB"] = BOB
    message = await card_for(bot, f"status <@U0BOB> <@U0BOB|bob> {_mailto(BOB)}")
    text = all_text(message)
    assert message["text"] == "Seat status (1 found)"
    assert text.count(_uid(sandbox, BOB)) == 1, text
    assert "1 duplicate target(s) ignored" in text and "is the same seat as" in text
