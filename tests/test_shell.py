"""The local shell, driven exactly as a newcomer would: piped input into `python -m bot`."""

from __future__ import annotations

import asyncio
import getpass
import re
import subprocess
from pathlib import Path

import redis.asyncio as aredis

from tests.support.flow import audit_events
from tests.support.servers import run_bot


def shell(stdin: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_bot(*args, cwd=cwd, stdin=stdin, env=env)


def test_piped_status_runs_on_the_sandbox(tmp_path: Path) -> None:
    """`printf '/seat status alice@example.com' | python -m bot shell` shows the demo seat."""
    result = shell("/seat status alice@example.com\n", "shell", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SANDBOX" in result.stdout
    assert "alice@example.com* (Alice Example)" in result.stdout and "access ✓ / gateway ✓" in result.stdout
    assert "malice" not in result.stdout.split("> /seat status")[1]


def test_piped_revoke_confirm_and_result(tmp_path: Path) -> None:
    """Revoke, click button 1, accept the dialog: the in-channel result shows the removed seat."""
    script = "/seat revoke alice@example.com <@U0BOB> --reason left\n1\ny\n/seat status alice@example.com\n"
    result = shell(script, "shell", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "== Revoke 2 Zero Trust seats? ==" in out and "[1] Revoke 2 seats   [2] Cancel" in out
    assert "--- in channel ---" in out and "Zero Trust seats revoked: 2 of 2" in out
    assert "reason: left" in out
    assert out.rstrip().endswith("last login 2026-11-20T09:30:00Z") and "access ✗ / gateway ✗" in out


def test_declining_the_dialog_or_cancelling_changes_nothing(tmp_path: Path) -> None:
    """Answering no to the confirm dialog, then Cancel, leaves the seat as it was."""
    script = "/seat revoke bob@example.com\n1\nn\n2\n/seat status bob@example.com\n"
    out = shell(script, "shell", cwd=tmp_path).stdout
    assert "Not confirmed; nothing was done." in out and "Cancelled by @U0SHELL" in out
    assert out.rstrip().endswith("last login 2026-11-20T09:30:00Z")
    assert "access ✓ / gateway ✓ — last login" in out.split("/seat status bob@example.com")[1]


def test_a_non_admin_shell_user_is_refused(tmp_path: Path) -> None:
    """--user acts as another person, who is refused unless configured as an admin."""
    line = "/seat revoke alice@example.com\n"
    out = shell(line, "shell", "--user", "U0MALLORY", cwd=tmp_path, SEATBOT_ADMINS="U0ALICE").stdout
    assert "Only seat-bot admins" in out and "Revoke 1" not in out
    unset = shell(line, "shell", "--user", "U0MALLORY", cwd=tmp_path).stdout  # the shell's user is an admin
    assert "Only seat-bot admins" in unset and "No one may use this bot yet" not in unset


def test_no_subcommand_and_no_slack_settings_starts_the_shell(tmp_path: Path) -> None:
    """`python -m bot` without Slack credentials starts the shell with one line on going live."""
    result = shell("/seat help\n", cwd=tmp_path)
    assert "seatbot shell" in result.stdout and "To go live" in result.stdout
    assert "== /seat: Cloudflare Zero Trust seats ==" in result.stdout


def test_shell_seeds_a_large_account_and_syncs_on_the_in_process_store(tmp_path: Path) -> None:
    """SEATBOT_SANDBOX_USERS=6000 without REDIS_URL: `/seat sync` builds the directory in-process and a
    seat UID past the scan's reach is then found (confirmed with Cloudflare)."""
    uid = "00000000-5eed-4000-8000-000000006000"
    result = shell(f"/seat sync\n/seat status {uid}\n", "shell", cwd=tmp_path, SEATBOT_SANDBOX_USERS="6000")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "Plus 6,000 synthetic users" in out and "Store: in-process" in out
    synced = re.search(r"Directory synced: ([\d,]+) users, (\d+) pages, (\d+) Cloudflare requests", out)
    assert synced is not None, out  # 6,000 synthetic + the demo users, 100 per page
    users, pages, requests = (int(n.replace(",", "")) for n in synced.groups())
    assert users > 6_000 and pages == requests == -(-users // 100)
    assert "user006000@synthetic.example.com" in out and "seat directory (synced" in out


def test_piped_scheduled_removal_fires_on_the_sandbox(tmp_path: Path) -> None:
    """`--at in 2s`, confirm, `wait 4`: the removal fires in the shell's own process and is posted."""
    script = (
        "/seat revoke alice@example.com --at in 2s --reason last day\n1\ny\n"
        "/seat scheduled\nwait 4\n/seat scheduled\n/seat status alice@example.com\n"
    )
    out = shell(script, "shell", cwd=tmp_path).stdout
    assert "Schedule the removal of 1 Zero Trust seat?" in out and "Runs at" in out
    before, after = out.split("> wait 4")
    assert (
        "Scheduled removals (1)" in before and "[1] Cancel" in before and "gateway ✗, updated" not in before
    )
    assert "--- posted in C0SHELL ---" in after and "Scheduled removal done: 1 seat(s) revoked" in after
    assert "No scheduled removals." in after and "access ✗ / gateway ✗ — last login" in after


async def test_with_a_shared_redis_as_is_refused_unless_allowed_and_then_audited_as_the_shell(
    tmp_path: Path, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Live settings (REDIS_URL): one operator cannot request as themselves and confirm as another
    admin. `/as` and `--user` are refused; with SEATBOT_SHELL_ALLOW_AS=true they work, and every
    audit event the shell writes says it came from the shell and names the OS user who ran it."""
    env = {"REDIS_URL": redis_url, "SEATBOT_ADMINS": "U0DANA", "SEATBOT_TWO_PERSON": "true"}
    script = "/seat revoke carol@example.com --reason contract ended\n/as U0DANA\n1\ny\n"
    refused = (await asyncio.to_thread(shell, script, "shell", cwd=tmp_path, **env)).stdout
    assert "`/as` and `--user` are off with live settings" in refused and "You are now U0DANA" not in refused
    assert "revoked: 1 of 1" not in refused  # button 1 stayed U0SHELL's own click: the two-person rule
    started = await asyncio.to_thread(shell, "", "shell", "--user", "U0DANA", cwd=tmp_path, **env)
    assert started.returncode == 2 and "SEATBOT_SHELL_ALLOW_AS" in started.stderr
    assert [e["event"] for e in await audit_events(redis_client)] == ["requested", "refused"]

    await redis_client.flushdb()
    allowed = (
        await asyncio.to_thread(shell, script, "shell", cwd=tmp_path, SEATBOT_SHELL_ALLOW_AS="true", **env)
    ).stdout
    assert "You are now U0DANA (admin)" in allowed and "revoked: 1 of 1" in allowed
    assert f"Audit events from this shell say so, and name OS user {getpass.getuser()}" in allowed
    events = await audit_events(redis_client)
    assert [e["event"] for e in events] == ["requested", "confirmed", "succeeded"]
    assert all(e["via"] == "shell" and e["os_user"] == getpass.getuser() for e in events)
