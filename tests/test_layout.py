"""The architecture, enforced: which parts of `bot` may import which.

An ast walk over bot/ (every import statement, also inside functions) rather than import-linter: the
rules fit in this file, need no extra dependency or config format, and a failure names the
module and the import that broke them. What the shell really loads is checked by importing it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import bot

PACKAGE = Path(bot.__file__).parent
EDGES = ("slack", "cloudflare", "state")  # the edges; the other roles are in ROLES below


def module_name(path: Path) -> str:
    parts = ["bot", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(path: Path, *, when_loaded: bool = False) -> set[str]:
    """Every bot module `path` imports (`from bot.slack import blocks` counts as bot.slack.blocks).

    `when_loaded`: only the top-level statements, what importing `path` loads (not functions or
    `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in tree.body if when_loaded else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {name: imported(path) for name, path in MODULES.items()}


def group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in EDGES else "core"


def reachable(start: str) -> dict[str, str]:
    """Every bot module `start` imports directly or indirectly, each with the module importing it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for dep in GRAPH[current]:
            if dep not in seen and dep != start:
                seen[dep] = current
                todo.append(dep)
    return seen


def arrows(groups: Iterable[str]) -> dict[tuple[str, str], list[str]]:
    """Imports from one of `groups` into another, as `importer -> imported` lines."""
    wanted = set(groups)
    found: dict[tuple[str, str], list[str]] = {}
    for module, deps in GRAPH.items():
        for dep in deps:
            edge = (group(module), group(dep))
            if edge[0] != edge[1] and set(edge) <= wanted:
                found.setdefault(edge, []).append(f"{module} -> {dep}")
    return found


def test_no_arrow_between_the_folders_runs_both_ways() -> None:
    """slack, cloudflare and state may depend on one another in one direction only."""
    found = arrows(EDGES)
    assert ("slack", "state") in found  # one-way arrows exist: the walk sees imports at all
    both_ways = [found[(a, b)] + found[(b, a)] for (a, b) in found if a < b and (b, a) in found]
    assert both_ways == []


def test_the_flow_knows_nothing_of_slack() -> None:
    """bot.app.flow reaches no bot.slack module, directly or through another module."""
    via = reachable("bot.app.flow")
    assert {"bot.domain.models", "bot.domain.parse"} <= via.keys()
    slack = {module: via[module] for module in via if group(module) == "slack"}
    assert slack == {}, f"bot.app.flow reaches Slack code (module: imported by): {slack}"


def test_the_shell_loads_neither_bolt_nor_aiohttp() -> None:
    """Importing bot.devtools.shell (the terminal front end) loads no Slack transport or HTTP server code."""
    probe = (
        "import json, sys, bot.devtools.shell; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('slack_bolt', 'aiohttp'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def private_reaches(source: str) -> list[str]:
    """Where `source` uses an underscore name of another object: `from bot.x import _y`, `thing._y`."""

    def private(name: str) -> bool:
        return name.startswith("_") and not name.endswith("__")

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bot"):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and private(node.attr):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            found += [] if own else [f"{node.lineno}: {ast.unparse(node)}"]
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    """What several modules share has a public name (app/targets.py, app/revocation.py, slack/kit.py)."""
    old = "from bot.slack.blocks import _context, esc\nasync def f(self):\n    self._x = self.flow._revoke()"
    assert private_reaches(old) == ["1: import _context", "3: self.flow._revoke"]  # the check sees them
    found = {name: hits for name, path in MODULES.items() if (hits := private_reaches(path.read_text()))}
    assert found == {}


# The roles (issue 19 §7): the folder says what a module may touch. Top-level modules: the entry
# (__main__), settings, the error tree, logging, metrics and `runtime`, the composition root.
ROLES = ("domain", "app", "jobs", "ops", "devtools", *EDGES)
IO = ("slack", "cloudflare", "state", "app", "jobs", "ops", "devtools")  # what the domain never imports
# Known, to be undone (issue 19 §3): scheduling's answers still take `Entry` from its Redis module.
DOMAIN_EXCEPTIONS = {"bot.domain.schedule_outcomes -> bot.state.schedules"}


def role(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ROLES else "top"


def test_the_domain_does_no_io() -> None:
    """bot.domain (rules, plain data) imports no Slack, Cloudflare, Redis, use case, job or tool module."""
    found = {f"{m} -> {d}" for m, deps in GRAPH.items() if role(m) == "domain" for d in deps if role(d) in IO}
    assert "bot.domain.models" in MODULES
    assert found == DOMAIN_EXCEPTIONS


def test_use_cases_reach_no_slack_and_no_devtools() -> None:
    """No bot.app module reaches bot.slack or bot.devtools, directly or through another module."""
    apps = [m for m in MODULES if role(m) == "app"]
    assert {"bot.app.flow", "bot.app.schedule", "bot.app.workflow"} <= set(apps)
    found = {
        f"{app}: {dep} (imported by {by})"
        for app in apps
        for dep, by in reachable(app).items()
        if role(dep) in ("slack", "devtools")
    }
    assert found == set()


def test_production_code_does_not_import_the_devtools() -> None:
    """Only bot.devtools imports bot.devtools when loaded; the entry and the wiring load it on demand."""
    found = {
        f"{m} -> {d}"
        for m, path in MODULES.items()
        if role(m) != "devtools"
        for d in imported(path, when_loaded=True)
        if role(d) == "devtools"
    }
    assert found == set()
    probe = (
        "import json, sys, bot.__main__, bot.runtime, bot.slack.web, bot.slack.socket_mode, bot.ops.check; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bot.devtools.'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
