"""docs/benchmarks.md is made of sections, one per benchmark topic, each rewritten on its own.

A topic writes its section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; running one
topic (`make bench ONLY=NAME`) leaves the others' figures in place.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks.md"
HEAD = (
    "# Benchmarks\n\n"
    "Written by `make bench` (bench/run.py); each section says when and on what machine it was measured.\n"
)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, redis-server {redis_version.split()[2]}"
    )


def stamp() -> str:
    """The line every section starts with: when and on what machine."""
    return f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}."


def table(rows: list[tuple[str, str, str]]) -> list[str]:
    return ["| measure | result | target |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows]]


def write_topic(
    name: str, title: str, intro: str, rows: list[tuple[str, str, str]], notes: list[str]
) -> None:
    """A topic's section: its title, the stamp, what was measured how, the table, and any missed targets."""
    lines = [f"## {title}", "", stamp(), intro, "", *table(rows), ""]
    if notes:
        lines += ["### Missed targets", "", *[f"- {n}" for n in notes], ""]
    write_section(name, "\n".join(lines))


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section `name` in docs/benchmarks.md and print it."""
    text = OUT.read_text() if OUT.exists() else HEAD
    if not text.startswith("# Benchmarks"):
        text = HEAD
    block = f"<!-- bench:{name} -->\n{markdown.rstrip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(markdown)
