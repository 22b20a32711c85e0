"""The bot as a deployer installs it: sdist and wheel built, the wheel installed alone with the locked
dependencies into a fresh virtualenv outside the checkout, run from an empty directory.

Editable installs (`make`) and the checkout on sys.path hide a wheel that leaves modules out; this test
sees only what the wheel holds. It runs deploy/build.sh and deploy/install.sh, the same scripts the
Dockerfile runs (tests/test_container.py keeps them the same). pip's own cache keeps it to ~20 s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.dockerfile import healthcheck_command
from tests.support.fake_slack import FakeSlack
from tests.support.harness import ADMIN, command_body, sign, stack_env
from tests.support.servers import clean_env, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
# What a build must not pick up from a developer's checkout (the Dockerfile's .dockerignore says the same).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis"
)


def procfile_command(process: str = "web") -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process}: line in the Procfile")


def env_with(bin_dir: Path, **values: str) -> dict[str, str]:
    """A clean environment whose `python` is the one in `bin_dir` (no trace of the test's virtualenv)."""
    env = clean_env(**values)
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHON"):
        env.pop(name, None)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `bin` folder of a fresh virtualenv holding the wheel and requirements.txt, nothing else."""
    work = tmp_path_factory.mktemp("wheel")
    source, builder, dist, venv = work / "source", work / "builder", work / "dist", work / "venv"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    # The Dockerfile's build stage has a bare interpreter; a fresh virtualenv is the same here.
    run([sys.executable, "-m", "venv", str(builder)], cwd=work, env=clean_env())
    run(["/bin/sh", "deploy/build.sh", str(dist)], cwd=source, env=env_with(builder / "bin"))
    built = sorted(path.name for path in dist.iterdir())
    assert built == ["seatbot-0.1.0-py3-none-any.whl", "seatbot-0.1.0.tar.gz"], built
    with zipfile.ZipFile(dist / built[0]) as wheel:
        names = set(wheel.namelist())
    # Every module of the checkout is in the wheel (the wheel used to hold `bot/*.py` only).
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "bot").rglob("*.py")}
    assert modules - names == set()
    assert "seatbot-0.1.0.dist-info/licenses/LICENSE" in names
    requirements = source / "requirements.txt"
    install = ["/bin/sh", str(source / "deploy/install.sh"), str(venv), str(requirements), str(dist)]
    run(install, cwd=work, env=env_with(builder / "bin"))
    yield venv / "bin"


async def test_installed_wheel_checks_serves_and_answers(
    installed: Path, tmp_path: Path, slack: FakeSlack, redis_url: str, redis_client: object
) -> None:
    """From an empty directory: `python -m bot check` passes and the Procfile's command serves
    /healthz (200, and the Dockerfile's HEALTHCHECK passes) and answers a signed `/seat help`, all
    from the installed wheel."""
    empty = tmp_path / "empty"
    empty.mkdir()
    python = str(installed / "python")
    found = run([python, "-c", "import bot; print(bot.__file__)"], cwd=empty, env=env_with(installed))
    assert Path(found.strip()).is_relative_to(installed.parent), found  # not the checkout's bot/

    cf_port, port = free_port(), free_port()
    sandbox = subprocess.Popen(
        [python, "-m", "bot", "sandbox", "--port", str(cf_port)],
        cwd=empty,
        env=env_with(installed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    env = env_with(
        installed,
        **stack_env(slack_api_url=slack.api_url, redis_url=redis_url, cf_port=cf_port, PORT=str(port)),
    )
    web: subprocess.Popen[bytes] | None = None
    try:
        users = f"http://127.0.0.1:{cf_port}/client/v4/accounts/x/access/users"
        await asyncio.to_thread(wait_http, users, proc=sandbox)
        checked = await asyncio.to_thread(run, [python, "-m", "bot", "check"], cwd=empty, env=env)
        for part in ("config", "slack", "cloudflare", "redis"):
            assert f"OK   {part}:" in checked, checked

        web = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {procfile_command()}"],  # as a platform runs it
            cwd=empty,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        health = await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc=web)
        assert health.status_code == 200 and health.json()["redis"] == "ok", health.text
        await asyncio.to_thread(run, healthcheck_command(), cwd=empty, env=env)  # the image's probe passes
        body = command_body("help", user=ADMIN, channel="C1", response_url=slack.response_url("help"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.post("/slack/events", content=body, headers=sign(body))
        assert answer.status_code == 200
        (message,) = await slack.wait_responses("help", 1, timeout=10)
        assert message["response_type"] == "ephemeral" and "/seat revoke" in str(message)
    finally:
        for proc in (web, sandbox):
            if proc is not None:
                proc.terminate()
                proc.communicate(timeout=15)
