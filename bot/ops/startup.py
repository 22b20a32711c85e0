"""What a process says when it starts serving Slack: one line a deployer can check at a glance.

`announce` is called once per start (by `python -m bot serve|socket|start`), before the server
runs, so it stays the same whichever ASGI server or listener serves the requests.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Literal
from urllib.parse import urlsplit

from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from bot import __version__
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import redact_url

log = logging.getLogger("seatbot.startup")
Mode = Literal["http", "socket"]


def missing_for(settings: Settings, *, mode: Mode) -> list[str]:
    """Every setting `mode` needs and lacks (Socket Mode needs no signing secret)."""
    slack = "SLACK_APP_TOKEN" if mode == "socket" else "SLACK_SIGNING_SECRET"
    gone = settings.missing(slack, "SLACK_BOT_TOKEN", "CLOUDFLARE_ACCOUNT_ID")
    if not settings.has_cloudflare_credentials:
        gone.append("CLOUDFLARE_API_TOKEN (or CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY)")
    return gone


def require_for(settings: Settings, *, mode: Mode) -> None:
    """One ConfigError naming every missing setting, before anything starts."""
    gone = missing_for(settings, mode=mode)
    if gone:
        raise ConfigError(f"not set: {', '.join(gone)}")


def require_listenable(settings: Settings) -> None:
    """HOST and PORT checked before the server starts, so a bad one is named instead of an
    ASGI server's bare `[Errno 98]` (the port is free now; a race with another process stays possible)."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except OSError:
        raise ConfigError(
            f"HOST: {settings.host} is not an address or a name this machine resolves"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or "cannot be bound")
            raise ConfigError(f"PORT: {settings.host}:{settings.port} {why}") from None


def redis_label(settings: Settings) -> str:
    """Where confirmations live, without the password."""
    if settings.redis_url is None:
        return "in-process store (one process only; set REDIS_URL for more)"
    # Not the URL itself: it is held as a secret (it may embed a password) and would be redacted.
    parts = urlsplit(settings.redis_url.get_secret_value())
    if parts.scheme == "unix":
        return f"unix socket {parts.path}"
    db = parts.path.strip("/") or "0"
    tls = " over TLS" if parts.scheme == "rediss" else ""
    auth = ", password set" if parts.password else ""
    if settings.redis_sentinels:
        count = len(settings.sentinel_addresses)
        where = f"the primary of {settings.sentinel_service} (via {count} Sentinel{'s' if count > 1 else ''})"
        return f"{where} db {db}{tls}{auth}"
    cluster = " (Redis Cluster)" if settings.redis_cluster else ""
    return f"{parts.hostname}:{parts.port or 6379}{cluster} db {db}{tls}{auth}"


def admins_label(settings: Settings) -> str:
    users, groups = len(settings.seatbot_admins), len(settings.seatbot_admin_groups)
    return f"{users} admin{'' if users == 1 else 's'}, {groups} admin group{'' if groups == 1 else 's'}"


def describe(settings: Settings, *, mode: Mode) -> str:
    """The start-up line: mode and port, Redis, Cloudflare account and API, admins, job runner."""
    if mode == "http":
        workers = settings.web_concurrency
        where = (
            f"Slack over HTTP on {settings.host}:{settings.port} (POST /slack/events, GET /healthz, /readyz"
            f"{', /metrics' if settings.seatbot_metrics_token else ''}; "
            f"{workers} worker{'' if workers == 1 else 's'})"
        )
    elif settings.seatbot_health_port is not None:
        probes = f"{settings.seatbot_health_host}:{settings.seatbot_health_port}"
        where = f"Slack over Socket Mode (GET /healthz, /readyz on {probes})"
    else:
        where = "Slack over Socket Mode (no HTTP port)"
    jobs = (
        "job runner in this process"
        if settings.seatbot_job_runner
        else "no job runner here (SEATBOT_JOB_RUNNER=false: `python -m bot jobs` runs them)"
    )
    return (
        f"seatbot {__version__} serving {where} · Redis: {redis_label(settings)} · Cloudflare account "
        f"{settings.cloudflare_account_id} at {redact_url(settings.cloudflare_base_url)} · "
        f"{admins_label(settings)}"
        f" · {jobs}"
    )


def announce(settings: Settings, *, mode: Mode) -> None:
    """Log the start-up line, and a warning when nobody is allowed to use the bot."""
    log.info(describe(settings, mode=mode), extra={"mode": mode, "port": settings.port})
    if not (settings.seatbot_admins or settings.seatbot_admin_groups):
        log.warning(
            "no admins configured: every /seat command will be refused until SEATBOT_ADMINS "
            "(Slack user IDs) or SEATBOT_ADMIN_GROUPS (user-group IDs) is set"
        )


class _DropTokenSkipped(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself and, as the bot hands it a ready client,
    warns on every start that the token is unused. The client carries the same token: nothing to say."""

    _text = warning_client_prioritized_and_token_skipped()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self._text


def quiet_bolt() -> None:
    """Install the filter once on Bolt's app logger (idempotent)."""
    logger = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _DropTokenSkipped) for f in logger.filters):
        logger.addFilter(_DropTokenSkipped())
