"""The shell as several people (issue 11, items 13, 16): `/as`, the two-person rule, which Cloudflare."""

from __future__ import annotations

from pathlib import Path

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support.servers import run_bot


def shell(stdin: str, *args: str, cwd: Path, **env: str) -> str:
    result = run_bot("shell", *args, cwd=cwd, env=env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def after(out: str, command: str) -> str:
    """What the shell printed after `> command`, up to the next prompt."""
    return out.split(f"> {command}\n", 1)[1].split("\n> ", 1)[0]


def test_another_user_gets_the_real_non_admin_answer(tmp_path: Path) -> None:
    """`--user U…` with no SEATBOT_ADMINS: "only admins", not "no one may use this bot yet"."""
    out = shell("/seat revoke alice@example.com\n", "--user", "U0MALLORY", cwd=tmp_path)
    assert "Only seat-bot admins may do that" in after(out, "/seat revoke alice@example.com")
    assert "You are U0MALLORY (not an admin)" in out


def test_as_switches_user_mid_session(tmp_path: Path) -> None:
    """`/as U…` changes who types: refused as a non-admin, a card again as the shell's admin."""
    out = shell(
        "/as U0MALLORY\n/seat status bob@example.com\n/as U0SHELL\n/seat status bob@example.com\n",
        cwd=tmp_path,
    )
    assert "You are now U0MALLORY (not an admin)." in out
    parts = out.split("> /seat status bob@example.com\n")
    assert "Only seat-bot admins" in parts[1] and "Seat status (1 found)" in parts[2]


def test_two_person_rule_in_the_shell(tmp_path: Path) -> None:
    """The requester's click is refused and the card stays; another admin's click revokes."""
    script = "/seat revoke carol@example.com\n1\ny\n/as U0DANA\n1\ny\n/seat status carol@example.com\n"
    out = shell(script, cwd=tmp_path, SEATBOT_TWO_PERSON="true", SEATBOT_ADMINS="U0DANA")
    assert "Two-person rule: another admin has to confirm your request." in out
    tail = out.split("> /as U0DANA\n", 1)[1]
    assert "Zero Trust seats revoked: 1 of 1" in tail and "confirmed by @U0DANA" in tail
    assert "access ✗ / gateway ✗ — last login" in after(out, "/seat status carol@example.com")


def test_an_ephemeral_card_is_not_clickable_by_someone_else(tmp_path: Path) -> None:
    """A card only the requester sees cannot be clicked after `/as` someone else."""
    out = shell("/seat revoke bob@example.com\n/as U0DANA\n1\n", cwd=tmp_path, SEATBOT_ADMINS="U0DANA")
    assert "The last card was only for U0SHELL; U0DANA does not see it." in out
    assert "Type a /seat command" in after(out, "1") and "Revoking" not in out


def test_banner_names_the_cloudflare_base_url_when_it_is_not_cloudflares(tmp_path: Path) -> None:
    """Credentials with CLOUDFLARE_BASE_URL at a local sandbox: the banner says that URL, not LIVE."""
    env = {"CLOUDFLARE_ACCOUNT_ID": DEMO_ACCOUNT_ID, "CLOUDFLARE_API_TOKEN": DEMO_TOKEN}
    local = shell("", cwd=tmp_path, CLOUDFLARE_BASE_URL="http://127.0.0.1:8787/client/v4", **env)
    assert "LIVE" not in local
    assert (
        f"Cloudflare: account {DEMO_ACCOUNT_ID} at http://127.0.0.1:8787/client/v4 (CLOUDFLARE_BASE_URL"
        in local
    )
    live = shell("", cwd=tmp_path, **env)
    assert f"Cloudflare: LIVE account {DEMO_ACCOUNT_ID} at https://api.cloudflare.com/client/v4" in live
