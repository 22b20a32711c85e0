"""`python -m bot check`: settings, Slack auth.test, one read-only Cloudflare call, Redis PING,
the seat directory, and whether a job runner is alive (WARN, not FAIL, when none is).

One line per part, each service tried once with a short timeout (no retries, no log lines in
between), and every FAIL says what failed (Slack's error string, the host:port), and what to do.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import redis.asyncio as aredis
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.directory_sync import describe
from bot.cloudflare.budget import Pause, RateBudget
from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.transport import DEFAULT_BASE_URL
from bot.config import Settings
from bot.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    SeatbotError,
    SeatsError,
    Unavailable,
)
from bot.jobs.status import WHAT_WAITS, runners
from bot.logs import redact, redact_url
from bot.ops.netdiag import endpoint, why
from bot.ops.startup import missing_for
from bot.redis_watch import last_wipe
from bot.state.directory import SeatDirectory
from bot.state.redis import connect_redis

TIMEOUT_SECONDS = 5.0  # per service: `check` answers in seconds, not after a retry budget

_SLACK_ADVICE = {
    "invalid_auth": "SLACK_BOT_TOKEN is not a valid token: copy the Bot User OAuth Token (xoxb-…) "
    "from the app's OAuth & Permissions page",
    "not_authed": "SLACK_BOT_TOKEN is empty or was not sent",
    "token_revoked": "the token was revoked: reinstall the app and copy the new xoxb- token",
    "account_inactive": "the token's app or workspace is deactivated: reinstall the app",
    "token_expired": "the token expired (token rotation is on): use a fresh xoxb- token",
}


@dataclass(frozen=True)
class Skip(Exception):
    """A part that cannot be tried because a setting it needs is missing (the config line says so)."""

    reason: str


@dataclass(frozen=True)
class Warn(Exception):
    """A part that works but needs attention (no job runner alive): said, without failing `check`."""

    reason: str


def missing_settings(settings: Settings) -> list[str]:
    """Every setting the configured mode needs and lacks, and admins (without them nobody may revoke)."""
    socket = bool(settings.slack_app_token and settings.slack_app_token.get_secret_value())
    gone = missing_for(settings, mode="socket" if socket else "http")
    if not (settings.seatbot_admins or settings.seatbot_admin_groups):
        gone.append("SEATBOT_ADMINS or SEATBOT_ADMIN_GROUPS (nobody may revoke)")
    return gone


async def run_checks(
    settings: Settings, *, out: Callable[[str], None] = print, seconds: float = TIMEOUT_SECONDS
) -> int:
    """Print one line per part; 0 when every part is OK. `seconds` bounds each service's one try."""
    timeout = seconds
    socket = bool(settings.slack_app_token and settings.slack_app_token.get_secret_value())

    async def config() -> str:
        gone = missing_settings(settings)
        if gone:
            raise SeatbotError(f"not set: {', '.join(gone)}")
        if not socket and settings.web_concurrency > 1 and settings.redis_url is None:
            raise SeatbotError("REDIS_URL: required when WEB_CONCURRENCY is more than 1")
        admins = (
            f"{len(settings.seatbot_admins)} admin(s), {len(settings.seatbot_admin_groups)} admin group(s)"
        )
        return f"settings complete for {'Socket Mode' if socket else 'HTTP'}; {admins}"

    async def slack() -> str:
        if not settings.slack_bot_token:
            raise Skip("SLACK_BOT_TOKEN not set")
        where = endpoint(settings.slack_api_url)
        client = AsyncWebClient(
            token=settings.bot_token(),
            base_url=settings.slack_api_url,
            timeout=int(timeout),
            retry_handlers=[],
        )
        try:
            response = await client.auth_test()
            detail = f"auth.test as {response.get('user')} in {response.get('team')}"
            if socket:
                apps = AsyncWebClient(
                    base_url=settings.slack_api_url, timeout=int(timeout), retry_handlers=[]
                )
                await apps.apps_connections_open(app_token=settings.app_token())
                detail += "; SLACK_APP_TOKEN opens Socket Mode"
            return detail
        except SlackApiError as exc:
            if not isinstance(exc.response.data, dict):  # not Slack's JSON: SLACK_API_URL is wrong
                raise SeatbotError(
                    f"{where} answered HTTP {exc.response.status_code} that is not Slack's API (no JSON): "
                    "check SLACK_API_URL (Slack's is https://slack.com/api/)"
                ) from None
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            method = "apps.connections.open (SLACK_APP_TOKEN)" if "auth.test" not in str(exc) else "auth.test"
            advice = _SLACK_ADVICE.get(error, f"see https://api.slack.com/methods/{method.split()[0]}")
            if method.startswith("apps") and error in _SLACK_ADVICE:
                advice = "SLACK_APP_TOKEN is wrong: create an App-Level Token with connections:write"
            raise SeatbotError(f"Slack answered {error} to {method}: {advice}") from None
        except (OSError, TimeoutError) as exc:
            raise SeatbotError(
                f"cannot reach {where}: {why(exc)}; check the network, a proxy, or SLACK_API_URL"
            ) from None
        except Exception as exc:  # aiohttp's client errors are not all OSErrors
            raise SeatbotError(
                f"cannot reach {where}: {why(exc)}; check the network or SLACK_API_URL"
            ) from None

    async def cloudflare() -> str:
        if not settings.cloudflare_account_id or not settings.has_cloudflare_credentials:
            raise Skip("CLOUDFLARE_ACCOUNT_ID or credentials not set")
        client = CloudflareClient(
            account_id=settings.account_id(),
            auth_headers=settings.cloudflare_auth_headers(),
            base_url=settings.cloudflare_base_url,
            max_attempts=1,
            retry_deadline=timeout,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        )
        try:
            await client.ping()
        except SeatsError as exc:
            raise SeatbotError(_cloudflare_advice(exc, settings)) from None
        finally:
            await client.aclose()
        account, base = settings.cloudflare_account_id, redact_url(settings.cloudflare_base_url)
        text = f"users list of account {account} readable at {base}"
        if (pause := await _cloudflare_pause(settings)) is not None:
            raise Warn(f"{text}, but {pause.text()}")
        return text

    async def redis() -> str:
        if settings.redis_url is None:
            return "REDIS_URL not set: in-process store (one process only)"
        url = settings.redis_url.get_secret_value()
        # a socket's path is shown without the URL around it (the whole REDIS_URL is redacted)
        where = endpoint(url) if not url.startswith("unix:") else "socket " + urlsplit(url).path
        if settings.redis_sentinels:
            where = f"the primary of {settings.sentinel_service} (Sentinels {settings.redis_sentinels})"
        client: aredis.Redis = connect_redis(settings, retries=0)
        try:
            await client.ping()
            try:
                info: object = await client.info()
            except RedisError:  # INFO renamed or denied (some managed Redis): PING is all we know
                info = None
            wipe = await last_wipe(client)
        except AuthenticationError:
            if not _has_password(url):
                raise SeatbotError(
                    f"{where} requires a password and REDIS_URL has none: put it in the URL "
                    "(redis://:PASSWORD@host:6379/0, or ?password= after a socket path)"
                ) from None
            raise SeatbotError(f"{where} refused the password or user in REDIS_URL") from None
        except ResponseError as exc:
            if "db index" in str(exc).lower():
                db = urlsplit(url).path.strip("/") or parse_qs(urlsplit(url).query).get("db", ["?"])[0]
                raise SeatbotError(
                    f"{where} has no database {db} (DB index is out of range): use a smaller number at "
                    "the end of REDIS_URL (/0 is always there; a server has 16 unless configured)"
                ) from None
            raise SeatbotError(f"{where} answered an error: {why(exc)}; check REDIS_URL") from None
        except (RedisError, OSError) as exc:
            raise SeatbotError(
                f"cannot reach {where}: {why(exc)}; is Redis running there? check REDIS_URL "
                "(rediss:// for TLS, REDIS_TLS_CA_FILE for a private CA)"
            ) from None
        finally:
            await client.aclose()
        if wipe is not None:
            raise Warn(f"PING ok at {where}, but {wipe.text()}")
        text = f"PING ok at {where}"
        if settings.redis_sentinels and isinstance(info, dict):
            replicas = int(info.get("connected_slaves", 0))
            text += f", {replicas} replica{'' if replicas == 1 else 's'} connected"
            if replicas == 0:  # a failover now would promote nothing, or a replica missing writes
                claims = "no replica holds the cards' claims (see REDIS_WAIT_REPLICAS)"
                raise Warn(f"{redis_fitness(text, info)}: {claims}")
        return redis_fitness(text, info)

    async def directory() -> str:
        if settings.seatbot_directory_refresh_seconds <= 0:
            return "off (SEATBOT_DIRECTORY_REFRESH_SECONDS=0): seat UIDs are found by scanning"
        if settings.redis_url is None:
            return "in-process store: each process builds its own directory after it starts"
        client: aredis.Redis = connect_redis(settings, retries=0)
        try:
            status = await SeatDirectory(client).status()
        except SeatbotError:
            raise SeatbotError("Redis unreachable: the directory's state is unknown") from None
        finally:
            await client.aclose()
        return f"{status.state}: " + describe(status, now=time.time())

    async def jobs() -> str:
        if settings.redis_url is None:
            if settings.seatbot_job_runner:
                return "in-process store: each process runs its own job runner"
            raise Warn(f"SEATBOT_JOB_RUNNER=false without REDIS_URL: nothing runs {WHAT_WAITS}")
        client: aredis.Redis = connect_redis(settings, retries=0)
        try:
            found = await runners(client)
        except (RedisError, OSError):
            raise SeatbotError("Redis unreachable: whether a job runner is alive is unknown") from None
        finally:
            await client.aclose()
        if not found.alive:
            raise Warn(found.text())
        return found.text()

    probes: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("config", config),
        ("slack", slack),
        ("cloudflare", cloudflare),
        ("redis", redis),
        ("directory", directory),
        ("jobs", jobs),
    ]
    results = await asyncio.gather(*(_run(probe, timeout + 2) for _, probe in probes))
    failures = 0
    for (name, _), (status, text) in zip(probes, results, strict=True):
        failures += status not in ("OK", "WARN")
        out(redact(f"{status:<4} {name}: {text}"))
    return 1 if failures else 0


MIN_REDIS = (6, 2)  # GETDEL and SET … KEEPTTL


def redis_fitness(text: str, info: object) -> str:
    """The Redis version, eviction policy and AOF from INFO beside `text`; FAIL below 6.2, WARN when
    a full Redis may evict keys (open cards, claims and schedules would vanish without a word)."""
    if not isinstance(info, dict) or "redis_version" not in info:
        return text
    version = str(info["redis_version"])
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if len(numbers) == 2 and numbers < MIN_REDIS:
        raise SeatbotError(f"{text}, but Redis {version} is too old: the bot needs 6.2 or newer")
    policy = str(info.get("maxmemory_policy", "unknown"))
    aof = "AOF on" if str(info.get("aof_enabled")) == "1" else "AOF off"
    text = f"{text} (Redis {version}, maxmemory-policy {policy}, {aof})"
    if policy not in ("noeviction", "unknown"):
        raise Warn(f"{text}: set maxmemory-policy noeviction, or a full Redis drops open cards and schedules")
    return text


async def _cloudflare_pause(settings: Settings) -> Pause | None:
    """A pause Cloudflare asked the bot's processes for (kept in Redis), if one is running."""
    if settings.redis_url is None:
        return None
    client: aredis.Redis = connect_redis(settings, retries=0)
    try:
        return await RateBudget(client, window=settings.cloudflare_rate_window_seconds).pause()
    finally:
        await client.aclose()


async def _run(probe: Callable[[], Awaitable[str]], limit: float) -> tuple[str, str]:
    try:
        async with asyncio.timeout(limit):
            return "OK", await probe()
    except Skip as skip:
        return "SKIP", skip.reason
    except Warn as warn:
        return "WARN", warn.reason
    except SeatbotError as exc:
        return "FAIL", str(exc)
    except TimeoutError:
        return "FAIL", f"no answer within {limit:.0f}s"
    except Exception as exc:  # a surprise still gets its line, never a traceback
        return "FAIL", f"unexpected {type(exc).__name__}: {why(exc)}"


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password or parse_qs(parts.query).get("password"))


def _cloudflare_advice(exc: SeatsError, settings: Settings) -> str:
    text = exc.describe()
    if isinstance(exc, Unavailable):  # one attempt only here: what went wrong is the part in brackets
        text = re.sub(r"^Cloudflare unavailable after \d+ attempts \((.*)\)$", r"\1", text)
        text = re.sub(r"^connection failed: \w+ \(([^ ]+:\d+): (.*)\)$", r"cannot reach \1: \2", text)
        text = re.sub(r"^timed out \(([^ ]+:\d+)\)$", r"cannot reach \1: no answer in time", text)
        return f"{text}; check the network, a proxy, or CLOUDFLARE_BASE_URL"
    if isinstance(exc, AuthenticationFailed):
        return f"{text}: CLOUDFLARE_API_TOKEN (or the email + key pair) is wrong or expired"
    if isinstance(exc, PermissionDenied):
        return f"{text}: the token needs Access: Audit Logs Read and Zero Trust: Seats Write on this account"
    if isinstance(exc, NotFound) and not any(e.code == 7003 for e in exc.errors):
        # Cloudflare says 7003 for an account it cannot route to; any other 404 is the wrong address
        return (
            f"{settings.cloudflare_base_url} answered HTTP 404 with no Cloudflare account error: "
            f"check CLOUDFLARE_BASE_URL (Cloudflare's is {DEFAULT_BASE_URL})"
        )
    if isinstance(exc, NotFound):
        return f"{text}: check CLOUDFLARE_ACCOUNT_ID ({settings.cloudflare_account_id})"
    return text
