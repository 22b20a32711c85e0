"""The shell shows `/seat idle` and a sweep on a sandbox with idle users, and writes the CSV files."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.support.servers import clean_env


def test_shell_idle_report_sweep_and_csv_files(tmp_path: Path) -> None:
    """Piped: `/seat idle`, click Free, accept the dialog; both CSVs land in --files; nothing idle after."""
    files = tmp_path / "out"
    files.mkdir()
    script = "/seat idle 30 --reason demo\n1\ny\n/seat idle\n"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--idle-users", "12", "--files", str(files)],
        input=script,
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "== 12 idle seats of 17 in use (no sign-in for 30+ days) ==" in out
    assert "[1] Free 12 idle seats   [2] Cancel" in out
    assert "== Idle sweep: 12 freed, 0 skipped, 0 failed ==" in out and "reason: demo" in out
    assert "== 0 idle seats of 5 in use" in out.split("> /seat idle\n")[-1]
    (report,) = files.glob("idle-seats-30d-*.csv")
    (freed,) = files.glob("freed-seats-*.csv")
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 12 and {r["email"] for r in rows} == {
        f"idle{n:04d}@example.com" for n in range(1, 13)
    }
    assert len(list(csv.DictReader(freed.open()))) == 12
    assert f"12 rows written to {report}" in out
