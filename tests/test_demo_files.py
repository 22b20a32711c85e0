"""The shell's CSV files and the sandbox's demo account (issue 21 items 8-9), run as a newcomer would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN, DEMO_USERS
from tests.support.servers import clean_env, free_port, run_bot, wait_http


def test_idle_csvs_go_to_a_temporary_folder_under_names_that_never_collide(tmp_path: Path) -> None:
    """Two `/seat idle` in the same minute: two files, neither in the current directory (a checkout),
    each path said in the shell; with --files, there, again without overwriting."""
    out = run_bot("shell", "--idle-users", "5", cwd=tmp_path, stdin="/seat idle\n/seat idle\n").stdout
    written = [Path(p) for p in re.findall(r"rows written to (\S+\.csv)", out)]
    assert len(written) == 2 and written[0] != written[1], out
    assert all(p.is_file() and p.is_absolute() and tmp_path not in p.parents for p in written)
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "reports"
    folder.mkdir()
    for _ in range(2):  # two runs of the shell: the second never overwrites the first's files
        run_bot("shell", "--idle-users", "5", "--files", str(folder), cwd=tmp_path, stdin="/seat idle\n")
    assert len(list(folder.glob("idle-seats-*.csv"))) == 2


def test_the_sandbox_server_has_the_shells_idle_demo_users(tmp_path: Path) -> None:
    """`python -m bot sandbox` serves the demo account the shell uses: its people and 120 idle users."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/users"
        wait_http(base, proc=proc)
        emails: list[str] = []
        for page in (1, 2):
            answer = httpx.get(
                base,
                params={"page": page, "per_page": 100},
                headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
            )
            emails += [u["email"] for u in answer.json()["result"]]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    shell = run_bot("shell", cwd=tmp_path, stdin="").stdout
    idle = int(re.search(r"Plus (\d+) idle demo users", shell).group(1))  # type: ignore[union-attr]
    assert sum(e.startswith("idle") for e in emails) == idle == 120
    assert {email for email, _ in DEMO_USERS} <= set(emails)
