"""The lock (uv.lock) matches pyproject.toml, and the requirements files pip reads match the lock.

A dependency added to pyproject.toml without `make lock` would install in development (`make` adds it
unpinned) and be missing in production (deploy/install.sh installs only the lock): this fails first.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RELOCK = "pyproject.toml and uv.lock disagree: run `make lock` and commit uv.lock and requirements*.txt"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", re.MULTILINE)


def pins_of(name: str) -> dict[str, str]:
    return {str(canonicalize_name(n)): v for n, v in PIN.findall((ROOT / name).read_text())}


def wanted() -> set[tuple[str, str, str]]:
    """(name, specifier, group) for every dependency pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: set[tuple[str, str, str]] = set()
    lists: dict[str, list[str]] = {"": project["project"]["dependencies"]}
    lists |= {f"extra {k}": v for k, v in project["project"].get("optional-dependencies", {}).items()}
    lists |= {f"group {k}": v for k, v in project.get("dependency-groups", {}).items()}
    for group, requirements in lists.items():
        for text in requirements:
            req = Requirement(text)
            found.add((canonicalize_name(req.name), str(req.specifier), group))
    return found


def locked_project() -> dict[str, Any]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (project,) = [p for p in lock["package"] if p["name"] == "seatbot"]
    return dict(project["metadata"])


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {
        str(canonicalize_name(p["name"])): p["version"] for p in lock["package"] if p["name"] != "seatbot"
    }


def test_lock_was_made_from_this_pyproject() -> None:
    """uv.lock records the dependencies it was resolved for: they are pyproject.toml's."""
    metadata = locked_project()
    recorded = set()
    for item in metadata["requires-dist"]:
        marker = item.get("marker", "")
        group = "extra " + marker.split("'")[1] if marker.startswith("extra ==") else ""
        specifier = str(Requirement(f"x{item.get('specifier', '')}").specifier)
        recorded.add((canonicalize_name(item["name"]), specifier, group))
    for group, items in metadata.get("requires-dev", {}).items():
        for item in items:
            specifier = str(Requirement(f"x{item.get('specifier', '')}").specifier)
            recorded.add((canonicalize_name(item["name"]), specifier, f"group {group}"))
    assert recorded == wanted(), RELOCK


def test_requirements_files_pin_what_the_lock_says_with_hashes() -> None:
    """requirements*.txt (what pip, deploy/ and the Dockerfile install) are the lock's pins, hashed."""
    versions = locked_versions()
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-build.txt"):
        text, pins = (ROOT / name).read_text(), pins_of(name)
        assert pins, name
        assert {n: versions.get(n) for n in pins} == pins, f"{name}: {RELOCK}"
        assert len(re.findall(r"^[A-Za-z]", text, re.MULTILINE)) == len(pins), f"{name}: not all pinned"
        assert text.count("--hash=sha256:") >= len(pins), f"{name}: hashes missing"


def test_production_requirements_satisfy_every_runtime_dependency() -> None:
    """Each runtime dependency is pinned in requirements.txt at a version its range allows; development
    gets the same versions plus the test tools, production none of those."""
    pins, dev = pins_of("requirements.txt"), pins_of("requirements-dev.txt")
    for name, specifier, group in wanted():
        if group == "":
            assert name in pins and Requirement(f"x{specifier}").specifier.contains(pins[name]), name
    assert pins.items() <= dev.items()
    assert not {"pytest", "mypy", "ruff", "hypothesis"} & pins.keys()
