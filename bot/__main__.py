"""`python -m bot [serve|socket|start|check|shell|sandbox]`.

With no subcommand: serve Slack when Slack credentials are configured (Socket Mode when
SLACK_APP_TOKEN is set), otherwise start the local shell.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.ops.startup import announce, require_for, require_listenable


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    require_for(settings, mode="http")
    settings.require_cloudflare()
    if settings.web_concurrency > 1 and settings.redis_url is None:
        # each worker would keep its own confirmations: a click landing elsewhere would "expire"
        raise ConfigError("REDIS_URL: required when WEB_CONCURRENCY is more than 1")
    require_listenable(settings)
    announce(settings, mode="http")
    from bot.ops.probes import prepare_multiprocess
    from bot.slack.server import serve

    with prepare_multiprocess(settings):  # every worker's counters in one place, made before they start
        serve(settings)  # uvicorn, with a deadline per request and a connection cap (bot/slack/server.py)
    return 0


def run_socket(settings: Settings, args: argparse.Namespace) -> int:
    require_for(settings, mode="socket")
    settings.require_cloudflare()
    from bot.slack.socket_mode import run_socket_mode

    announce(settings, mode="socket")
    asyncio.run(run_socket_mode(settings))
    return 0


def run_start(settings: Settings, args: argparse.Namespace) -> int:
    """The Procfile's one process: Socket Mode when SLACK_APP_TOKEN is set, HTTP otherwise."""
    if settings.slack_app_token and settings.slack_app_token.get_secret_value():
        return run_socket(settings, args)
    return run_serve(settings, args)


def run_jobs(settings: Settings, args: argparse.Namespace) -> int:
    settings.require("SLACK_BOT_TOKEN")
    settings.require_cloudflare()
    from bot.slack.wiring import run_job_runner

    asyncio.run(run_job_runner(settings))
    return 0


def run_check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops.check import run_checks

    setup_logging("CRITICAL", secrets_=settings.secrets())  # only check's own lines, no JSON in between
    return asyncio.run(run_checks(settings))


def run_shell(settings: Settings, args: argparse.Namespace) -> int:
    from bot.devtools.shell import run_shell as shell

    if "seatbot_log_level" not in settings.model_fields_set:  # JSON log lines would drown the talk
        setup_logging("WARNING", secrets_=settings.secrets())
    code: int = asyncio.run(
        shell(
            settings,
            user=args.user,
            go_live_hint=args.hint,
            idle_users=args.idle_users,
            files=Path(args.files) if args.files else None,
        )
    )
    return code


def run_sandbox(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from bot.devtools.sandbox import Sandbox

    users = args.users if args.users is not None else settings.seatbot_sandbox_users
    from bot.devtools import demo_idle

    box = Sandbox(latency=args.latency, synthetic=users, rate_limit=args.rate_limit or None)
    for record in demo_idle.idle_users(args.idle_users):  # the shell's demo account: `/seat idle` finds them
        box.add_user(record)
    print(f"sandbox Cloudflare on http://{args.host}:{args.port}/client/v4 (token {box.token})", flush=True)
    if args.idle_users:
        print(f"  + {args.idle_users:,} idle demo users (idle0001@example.com, …)", flush=True)
    if users:
        print(f"  + {users:,} synthetic users (user000001@synthetic.example.com, …)", flush=True)
    uvicorn.run(box.app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": run_serve,
    "socket": run_socket,
    "start": run_start,
    "jobs": run_jobs,
    "check": run_check,
    "shell": run_shell,
    "sandbox": run_sandbox,
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bot", description=(__doc__ or "").splitlines()[0])
    sub = root.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve Slack over HTTP (POST /slack/events, GET /healthz, /readyz)")
    sub.add_parser("socket", help="serve Slack over Socket Mode (needs SLACK_APP_TOKEN)")
    sub.add_parser("start", help="serve Slack: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (Procfile)")
    sub.add_parser("jobs", help="run only the background job runner (scheduled removals)")
    sub.add_parser("check", help="check settings, Slack, Cloudflare and Redis; one line each")
    sh = sub.add_parser("shell", help="talk to the bot in this terminal")
    sh.add_argument("--user", default="U0SHELL", help="the Slack user ID you act as (default: an admin)")
    sh.add_argument("--idle-users", type=int, default=120, help="idle demo users in the sandbox (/seat idle)")
    sh.add_argument(
        "--files",
        default=None,
        help="where CSV files (Slack uploads) are written (default: a new temporary folder)",
    )
    sb = sub.add_parser("sandbox", help="run the Cloudflare stand-in on a port")
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--port", type=int, default=8787)
    sb.add_argument(
        "--idle-users", type=int, default=120, help="idle demo users, as in the shell (/seat idle)"
    )
    sb.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    sb.add_argument(
        "--users", type=int, default=None, help="synthetic users to add (default SEATBOT_SANDBOX_USERS)"
    )
    sb.add_argument(
        "--rate-limit", type=int, default=0, help="enforce N requests per rolling 5 minutes (429 past it)"
    )
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.hint = False
    try:
        settings = load_settings()
        setup_logging(settings.seatbot_log_level, secrets_=settings.secrets())
        command = args.command
        if command is None:
            if settings.slack_bot_token and settings.slack_app_token:
                command = "socket"
            elif settings.slack_bot_token and settings.slack_signing_secret:
                command = "serve"
            else:
                command, args.user, args.hint = "shell", "U0SHELL", True
                args.idle_users, args.files = 120, None
        return COMMANDS[command](settings, args)
    except ConfigError as exc:
        print(f"seatbot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
