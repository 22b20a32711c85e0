"""The Dockerfile and compose.yaml, checked without a container engine: the image installs the bot
only through deploy/build.sh and deploy/install.sh (what tests/test_wheel.py runs), as a non-root
user, starts the Procfile's command and probes /healthz; compose gives Redis AOF and noeviction."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from tests.support.dockerfile import exec_form, healthcheck_command, instructions

ROOT = Path(__file__).resolve().parents[1]


def procfile_web() -> list[str]:
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")]
    return shlex.split(line.removeprefix("web:"))


def test_image_installs_only_through_the_scripts_the_wheel_test_runs() -> None:
    """Every RUN is one of deploy/'s scripts (or plain housekeeping): no other pip call can creep in."""
    runs = [args for name, args in instructions() if name == "RUN"]
    assert runs[0] == "sh deploy/build.sh /dist"
    assert runs[1].startswith("sh /tmp/install.sh /opt/seatbot /tmp/requirements.txt /tmp/dist &&")
    assert all("pip" not in run and "build" not in run.removeprefix("sh deploy/build.sh") for run in runs)
    copies = [args for name, args in instructions() if name == "COPY"]
    assert "requirements.txt deploy/install.sh /tmp/" in copies  # the lock, not a fresh resolve
    for script in ("build.sh", "install.sh"):
        assert (ROOT / "deploy" / script).is_file()


def test_image_is_slim_runs_as_non_root_and_starts_the_procfile_command() -> None:
    steps = instructions()
    bases = [args for name, args in steps if name == "FROM"]
    assert bases and all(base.startswith("python:${PYTHON_VERSION}-slim") for base in bases)
    assert ("ARG", f"PYTHON_VERSION={(ROOT / '.python-version').read_text().strip()}") in steps
    (user,) = [args for name, args in steps if name == "USER"]
    assert user not in ("root", "0")
    (cmd,) = [args for name, args in steps if name == "CMD"]
    assert exec_form(cmd) == procfile_web() == ["python", "-m", "bot", "start"]
    assert any("/healthz" in part for part in healthcheck_command())


def test_build_context_leaves_out_secrets_and_virtualenvs() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_compose_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    redis, bot = compose["services"]["redis"], compose["services"]["bot"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--maxmemory-policy"] == "noeviction"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert bot["environment"]["REDIS_URL"] == "redis://redis:6379/0" and bot["build"] == "."
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
