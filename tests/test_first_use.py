"""What an on-call admin meets first (issue 11, items 1-5): outcome, no-op revokes, --reason, audit, hints.

Scenario tests go through the real Starlette app with signed Slack requests, real Redis, the fake
Slack and the sandbox Cloudflare; the grammar is also checked on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.devtools.sandbox import Sandbox
from bot.domain.parse import Target, parse
from bot.errors import ParseError
from tests.support.harness import ALICE, SlackClient, all_text, button, card_for

BOB = "bob@example.com"
MALLORY = "malice@example.com"


def _user(sandbox: Sandbox, email: str) -> dict[str, Any]:
    return next(u for u in sandbox.users.values() if u["email"] == email)


async def _confirm(bot: SlackClient, card: dict[str, Any]) -> dict[str, Any]:
    """Click the card's Revoke button; return the in-channel outcome."""
    _, key = await bot.click("seat_confirm", button(card, "seat_confirm")["value"])
    posts = await bot.slack.wait_responses(key, 3)
    assert posts[1]["response_type"] == "in_channel"
    return posts[1]


# -- item 1: the outcome names each seat as Cloudflare returned it ----------------------------------


async def test_outcome_shows_whole_seat_uid_email_flags_and_updated_at(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """A seat typed by UID comes back in the channel with its whole UID, email, flags and updated_at."""
    alice, bob = _user(sandbox, ALICE), _user(sandbox, BOB)
    card = await card_for(bot, f"revoke {alice['seat_uid']} {BOB}")
    text = all_text(await _confirm(bot, card))
    for user in (alice, bob):
        assert user["updated_at"] != "2025-01-15T10:00:00.000000Z"  # the PATCH's own timestamp
        line = (
            f"*{user['email']}* — seat `{user['seat_uid']}` — access ✗ / gateway ✗"
            f" — updated_at {user['updated_at']}"
        )
        assert line in text


# -- item 2: a seat that is already gone is not "revoked" again --------------------------------------


async def test_already_removed_seat_gets_a_line_no_card_and_no_patch(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """Both flags already false: a "has no seat" line, no button, no card, and no PATCH."""
    _user(sandbox, MALLORY).update(access_seat=False, gateway_seat=False)
    message = await card_for(bot, f"revoke {MALLORY}")
    text = all_text(message)
    assert "Nothing to revoke" in text and f"{MALLORY}: has no Zero Trust seat" in text
    assert "Revoke 1" not in text and not any(b["type"] == "actions" for b in message["blocks"])
    assert sandbox.patches == []


async def test_mixed_targets_card_and_patch_only_the_seat_still_held(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """One seat gone, one held: the card offers one seat, names the other, and the PATCH sends one."""
    _user(sandbox, MALLORY).update(access_seat=False, gateway_seat=False)
    card = await card_for(bot, f"revoke {MALLORY} {BOB}")
    assert button(card, "seat_confirm")["text"]["text"] == "Revoke 1 seat"
    assert f"{MALLORY}: has no Zero Trust seat" in all_text(card)
    outcome = await _confirm(bot, card)
    assert "revoked: 1 of 1" in outcome["text"]
    (patch,) = sandbox.patches
    assert [item["seat_uid"] for item in patch.body] == [_user(sandbox, BOB)["seat_uid"]]


# -- item 3: --reason anywhere ---------------------------------------------------------------------


async def test_reason_before_the_targets_makes_a_card(bot: SlackClient) -> None:
    """`/seat revoke --reason off bob@…` makes the card for bob with the reason "off"."""
    card = await card_for(bot, f"revoke --reason off {BOB}")
    text = all_text(card)
    assert button(card, "seat_confirm")["text"]["text"] == "Revoke 1 seat"
    assert BOB in text and "reason: off" in text


@pytest.mark.parametrize(
    ("text", "targets", "reason"),
    [
        (f"revoke --reason off {BOB}", [BOB], "off"),
        (f'revoke --reason "left the company" {BOB} {ALICE}', [BOB, ALICE], "left the company"),
        (f"revoke --reason=off {BOB}", [BOB], "off"),
        (f"revoke {BOB} --reason offboarding, ticket IT-4211", [BOB], "offboarding, ticket IT-4211"),
        (f"revoke {BOB} --reason “quoted” {ALICE}", [BOB, ALICE], "quoted"),
    ],
)
def test_reason_goes_anywhere(text: str, targets: list[str], reason: str) -> None:
    """Before, between or after the targets; quoted or not."""
    command = parse(text)
    assert command.targets == tuple(Target("email", t) for t in targets) and command.reason == reason


def test_an_email_inside_a_trailing_reason_is_named_on_the_card() -> None:
    """With targets before it, an email in the reason stays text, and a note says so."""
    command = parse(f"revoke {BOB} --reason asked by {ALICE}")
    assert command.targets == (Target("email", BOB),) and command.reason == f"asked by {ALICE}"
    assert any(ALICE in note and "not taken as a target" in note for note in command.notes)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("revoke --reason left 1234abcd-0000", "put the targets before it, or quote the reason"),
        (f'revoke {BOB} --reason "never closed', "never closed"),
        (f"revoke {BOB} --reason a --reason b", "`--reason` is given twice"),
        (f"status {BOB} --reason a", "`--reason` only goes with `revoke`"),
        (f"revoke {BOB} --force", "Unknown option `--force` (known: `--reason`, `--at`)"),
    ],
)
def test_what_is_wrong_with_an_option_is_said_exactly(text: str, needle: str) -> None:
    """When the words cannot be told apart, the error says what to do."""
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert needle in str(caught.value)


# -- item 4: audit lines name their seats ----------------------------------------------------------


async def test_every_audit_line_names_its_seats(bot: SlackClient, sandbox: Sandbox) -> None:
    """requested, cancelled, confirmed and succeeded lines each carry the seat UID."""
    alice, bob = _user(sandbox, ALICE)["seat_uid"], _user(sandbox, BOB)["seat_uid"]
    card = await card_for(bot, f"revoke {ALICE}")
    _, key = await bot.click("seat_cancel", button(card, "seat_cancel")["value"])
    await bot.slack.wait_responses(key, 1)
    await _confirm(bot, await card_for(bot, f"revoke {BOB}"))
    listing = all_text(await card_for(bot, "audit 10"))
    lines = [line for line in listing.split("\\n") if "* by " in line]
    assert len(lines) == 5, listing  # requested, cancelled, requested, confirmed, succeeded
    for line in lines:
        assert alice in line or bob in line, line
    assert sum(alice in line for line in lines) == 2 and sum(bob in line for line in lines) == 3


async def test_audit_shortens_long_seat_lists(bot: SlackClient, sandbox: Sandbox) -> None:
    """A five-seat request lists three UIDs in full and says how many more."""
    emails = [u["email"] for u in sandbox.users.values()]
    await card_for(bot, "revoke " + " ".join(emails))
    listing = all_text(await card_for(bot, "audit 1"))
    assert "5 seats" in listing and "and 2 more" in listing
    assert sum(str(u["seat_uid"]) in listing for u in sandbox.users.values()) == 3


# -- item 5: input hints ---------------------------------------------------------------------------


def test_typed_at_name_points_to_the_mention_menu() -> None:
    """`@alice` typed as text (not a mention) says to pick the person from Slack's @ menu."""
    with pytest.raises(ParseError, match="not a Slack mention: pick the person from Slack's @ menu"):
        parse("status @alice")
