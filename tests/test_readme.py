"""The README tells the truth (issue 11, item 14): samples from real runs, a complete settings table."""

from __future__ import annotations

import re

import pytest

from bot.config import Settings
from tests.support.readme import GENERATED, README, REGENERATE, SESSIONS, generate, masked, samples

DOCUMENTED = samples(README.read_text())


def test_every_sample_is_in_the_readme() -> None:
    """The README carries each generated sample (shell sessions, /healthz, start-up line, check)."""
    assert set(DOCUMENTED) == {*SESSIONS, *GENERATED}


@pytest.mark.parametrize("name", sorted({*SESSIONS, *GENERATED}))
def test_readme_sample_matches_a_real_run(name: str) -> None:
    """Each sample equals what a real run prints today (times and cf-ray ids aside)."""
    fresh = generate(name)
    assert masked(DOCUMENTED.get(name, "")) == masked(fresh), (
        f"README sample {name!r} no longer matches a real run: run `{REGENERATE}` and commit README.md"
    )


def test_settings_table_lists_every_setting() -> None:
    """Every setting the bot reads has a row in the README's settings table, and no row is stale."""
    text = README.read_text()
    table = text[text.index("## Settings") :]
    table = table[: table.index("\n## ", 1)]
    rows = {
        name
        for row in re.findall(r"^\| (.+?) \|", table, re.M)
        for name in re.findall(r"`([A-Z0-9_]+)`", row)
    }
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - rows == set(), "settings missing from the README table"
    assert rows - fields == set(), "README rows for settings that do not exist"
