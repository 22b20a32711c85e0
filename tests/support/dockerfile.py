"""The Dockerfile read as instructions (no container engine runs here): for the tests that keep it
doing what tests/test_wheel.py does."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def exec_form(arguments: str) -> list[str]:
    """A CMD/HEALTHCHECK's JSON (exec) form as its argument list; `HEALTHCHECK` options are skipped."""
    start = arguments.index("[")
    value = json.loads(arguments[start:])
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def healthcheck_command() -> list[str]:
    (healthcheck,) = [args for name, args in instructions() if name == "HEALTHCHECK"]
    return exec_form(healthcheck)
