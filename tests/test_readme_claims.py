"""README claims a reader acts on, each checked here (issue 21 item 10). Claims about behaviour are
checked where the behaviour is: "duplicates collapse (in `status` too)" by
tests/test_pasted_input.py::test_status_lists_each_person_once."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def test_the_manifest_url_count_is_the_one_the_readme_gives() -> None:
    """ "Replace `https://seatbot.example.com` (N places)": N is how many times manifest.yml has it."""
    manifest = (ROOT / "manifest.yml").read_text()
    uses = len(re.findall(r"^\s*[\w_]+:\s*https://seatbot\.example\.com", manifest, re.M))
    claims = re.findall(r"`https://seatbot\.example\.com` \((\w+) places?\)", README)
    assert claims, "the README no longer says how many places to replace"
    assert {WORDS[c] for c in claims} == {uses} == {3}


def test_the_readme_makes_no_claim_about_how_long_the_suite_takes() -> None:
    """The suite's duration depends on the machine (a minute here, two there): no figure is promised."""
    assert not re.search(r"suite (takes|runs|finishes)[^.]*(second|minute)", README)
