"""Settings from the environment (and `.env`), validated once at start-up.

A missing or malformed setting becomes one `ConfigError` line naming the variable; secrets are
`SecretStr` so they never show in a repr, a log line or an exception.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError

log = logging.getLogger("seatbot.config")

CommaList = Annotated[tuple[str, ...], NoDecode]
REDIS_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_CONFIRM_TTL = 1800  # a Slack response_url lives 30 minutes


# Slack IDs, checked at start-up: an email, a name or a mention in these settings used to load fine
# and then every command was refused. (pattern, what one looks like, where to find it)
MEMBER_ID = (
    re.compile(r"[UW][A-Z0-9]+"),
    "a Slack member ID looks like U0123ABCDE",
    "in Slack, open the person's profile, ⋮ (More) → Copy member ID",
)
GROUP_ID = (
    re.compile(r"S[A-Z0-9]+"),
    "a user-group ID looks like S0123ABCDE",
    "in Slack, People → User groups, open the group, ⋮ → Copy group ID",
)
CHANNEL_ID = (
    re.compile(r"[CGD][A-Z0-9]+"),
    "a channel ID looks like C0123ABCDE",
    "in Slack, open the channel and click its name: the ID is at the bottom of the About tab",
)
_MENTION = re.compile(r"<[@#!](?:subteam\^)?([A-Za-z0-9]+)(?:\|[^>]*)?>")


def _not_an_id(item: str, pattern: re.Pattern[str]) -> str:
    """Why `item` is not an ID of `pattern`'s kind, in a few words, with the fix when there is one."""
    if mention := _MENTION.fullmatch(item):
        return f"`{item}` is a mention (write {mention.group(1)})"
    if item.startswith("#"):
        return f"`{item}` is a channel name"
    if "@" in item:
        return f"`{item}` is an email" if "." in item.partition("@")[2] else f"`{item}` is a display name"
    if pattern.fullmatch(item.upper()):
        return f"`{item}` must be in capitals ({item.upper()})"
    for name, (other, _, _) in (("member", MEMBER_ID), ("user-group", GROUP_ID), ("channel", CHANNEL_ID)):
        if other is not pattern and other.fullmatch(item):
            return f"`{item}` is a {name} ID"
    return f"`{item}` is not an ID"


def _check_ids(items: tuple[str, ...], kind: tuple[re.Pattern[str], str, str]) -> tuple[str, ...]:
    pattern, looks, where = kind
    bad = [_not_an_id(item, pattern) for item in items if not pattern.fullmatch(item)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: {looks} ({where})")
    return items


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Cloudflare
    cloudflare_account_id: str | None = Field(default=None, max_length=32)
    cloudflare_api_token: SecretStr | None = None
    cloudflare_email: str | None = None
    cloudflare_api_key: SecretStr | None = None
    cloudflare_base_url: str = "https://api.cloudflare.com/client/v4"
    cloudflare_chunk_size: int = Field(default=50, ge=1, le=1000)
    cloudflare_retry_deadline_seconds: float = Field(default=60.0, gt=0, le=600)
    cloudflare_max_pages: int = Field(default=50, ge=1, le=10_000)
    cloudflare_lookup_concurrency: int = Field(default=8, ge=1, le=32)
    # One rolling window for the token, shared by every process through Redis (bot/cloudflare/budget.py)
    cloudflare_rate_limit: int = Field(default=1200, ge=1, le=1_000_000)
    cloudflare_rate_window_seconds: float = Field(default=300.0, gt=0, le=3600)
    cloudflare_budget_wait_seconds: float = Field(default=15.0, ge=0, le=600)
    # What Workflow Builder runs may spend, in Cloudflare requests per minute (bot/app/workflow.py): all
    # workflows together, one workflow (keyed by its card channel), one runner (its `requester`)
    seatbot_workflow_requests_per_minute: int = Field(default=60, ge=1, le=100_000)
    seatbot_workflow_channel_requests_per_minute: int = Field(default=30, ge=1, le=100_000)
    seatbot_workflow_runner_requests_per_minute: int = Field(default=10, ge=1, le=100_000)

    # Seat directory (bot/state/directory.py, bot/app/directory_sync.py)
    seatbot_directory_refresh_seconds: float = Field(default=900.0, ge=0, le=7 * 86400)  # 0: off
    seatbot_directory_rate_share: float = Field(default=0.5, gt=0, lt=1)
    seatbot_directory_concurrency: int = Field(default=4, ge=1, le=32)
    seatbot_directory_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    seatbot_sandbox_users: int = Field(default=0, ge=0, le=999_999)  # synthetic users in the shell's sandbox

    # Slack
    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    # Redis
    redis_url: SecretStr | None = None  # may embed a password
    redis_tls_insecure: bool = False
    redis_tls_ca_file: Path | None = None  # PEM CA bundle that signed a rediss:// server's certificate
    redis_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    redis_cluster: bool = False  # REDIS_URL names any node of a Redis Cluster (bot/state/redis.py)
    redis_sentinels: str | None = None  # host:port,host:port: find the primary through Sentinel
    redis_sentinel_service: str | None = None  # the primary's name in Sentinel (default: REDIS_URL's host)
    redis_sentinel_password: SecretStr | None = None  # the Sentinels' own password, if they have one
    # replicas a claim must reach before a revoke acts on it (default: 1 with Sentinel, else 0)
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=10)

    # Serving
    port: int = Field(default=3000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64)
    host: str = "0.0.0.0"  # noqa: S104 - a web process must listen on the platform's interface
    # HTTP edge (README "Security model"). The largest request Slack sends this bot is a click on its
    # largest card, which comes back inside the block_actions payload: 50 targets with the longest
    # non-ASCII names measure ~310 KiB form-encoded (tests/test_edge_limits.py), so 512 KiB. Bodies not
    # yet signature-checked hold at most SEATBOT_UNVERIFIED_BODY_BYTES together (503 past it); one
    # client address holds at most SEATBOT_MAX_CONNECTIONS_PER_CLIENT connections (configured proxies
    # excepted), each with SEATBOT_READ_TIMEOUT_SECONDS to deliver its whole request; open
    # connections per worker are kept below the process's open-file limit at start-up.
    seatbot_max_body_bytes: int = Field(default=524_288, ge=16_384, le=16_777_216)
    seatbot_unverified_body_bytes: int = Field(default=33_554_432, ge=65_536, le=1_073_741_824)
    seatbot_read_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    seatbot_max_connections: int = Field(default=1000, ge=2, le=100_000)
    seatbot_max_connections_per_client: int = Field(default=32, ge=1, le=100_000)
    # X-Forwarded-For / -Proto are believed only from these addresses or networks (a load balancer)
    seatbot_trusted_proxies: CommaList = ()
    # Work after the ack: Cloudflare-bound commands share this many places and each must finish
    # within the deadline (it says so when it does not); help, refusals, cancel and audit never queue.
    seatbot_cloudflare_lane: int = Field(default=4, ge=1, le=64)
    seatbot_command_deadline_seconds: float = Field(default=30.0, gt=0, le=600)
    # Operating it (bot/ops/probes.py): GET /metrics only with this token (Authorization: Bearer …);
    # Socket Mode and `jobs` answer /healthz, /readyz (and /metrics) on SEATBOT_HEALTH_PORT when set.
    seatbot_metrics_token: SecretStr | None = None
    seatbot_health_port: int | None = Field(default=None, ge=1, le=65535)
    seatbot_health_host: str = "0.0.0.0"  # noqa: S104 - probes come from the platform, not localhost

    # Policy
    seatbot_admins: CommaList = ()
    seatbot_admin_groups: CommaList = ()
    seatbot_channels: CommaList = ()
    seatbot_confirm_ttl_seconds: int = Field(default=600, ge=1, le=MAX_CONFIRM_TTL)
    seatbot_two_person: bool = False
    seatbot_require_reason: bool = False
    seatbot_help_url: str | None = None  # the full guide, linked from `/seat help`
    seatbot_group_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    seatbot_audit_channel: str | None = None
    seatbot_audit_maxlen: int = Field(default=10_000, ge=100, le=10_000_000)
    # Refusals, expired and outdated clicks: their own stream, and at most this many per person a minute
    seatbot_audit_noise_maxlen: int = Field(default=5_000, ge=100, le=10_000_000)
    seatbot_audit_noise_per_minute: int = Field(default=20, ge=1, le=10_000)
    # Slack posts that must arrive (outcomes, audit copies, schedule news): retried this long, then kept
    seatbot_slack_retry_seconds: float = Field(default=60.0, ge=0, le=900)
    seatbot_outbox_retry_seconds: float = Field(default=60.0, ge=1, le=3600)  # kept ones, tried again
    seatbot_log_level: str = "INFO"
    # The local shell's `/as` and `--user` with live settings (real Cloudflare credentials or a shared
    # REDIS_URL): off, so one operator cannot be both admins of the two-person rule (bot/devtools/shell.py)
    seatbot_shell_allow_as: bool = False

    # Idle seats: `/seat idle`, the sweep and the App Home
    seatbot_idle_days: int = Field(default=30, ge=1, le=3650)
    seatbot_idle_exclude: CommaList = ()  # emails and @domains never listed as idle
    seatbot_idle_report_channel: str | None = None  # where the periodic idle report goes (off when unset)
    seatbot_idle_report_cron: str = "0 9 * * 1"  # when, in UTC: Mondays 09:00
    seatbot_sweep_resume_seconds: float = Field(default=60.0, gt=0, le=3600)  # after a rate-budget pause
    # a sweep's / a scheduled firing's runner renews its lease every third of this; when its process
    # dies, another takes the work over once the lease runs out
    seatbot_sweep_lease_seconds: float = Field(default=30.0, ge=1, le=600)
    seatbot_schedule_lease_seconds: float = Field(default=30.0, ge=1, le=600)

    # Scheduled removals and other background jobs (bot/jobs/runner.py)
    seatbot_timezone: str = "UTC"  # for `--at` times written without an offset
    seatbot_job_runner: bool = True  # run the job runner inside this process (web, socket, shell)
    seatbot_schedule_retry_seconds: float = Field(default=300.0, ge=0, le=3600)
    seatbot_redis_check_seconds: float = Field(default=10.0, gt=0, le=300)  # marker check: a wiped Redis

    @field_validator(
        "seatbot_admins",
        "seatbot_admin_groups",
        "seatbot_channels",
        "seatbot_idle_exclude",
        "seatbot_trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        """`NAME=` (as in a copied .env template) means unset for every optional setting."""
        if not isinstance(values, dict):
            return values
        optional = _optional_fields()
        return {
            key: None if key.lower() in optional and isinstance(v, str) and not v.strip() else v
            for key, v in values.items()
        }

    @field_validator("seatbot_admins")
    @classmethod
    def _member_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_ids(value, MEMBER_ID)

    @field_validator("seatbot_admin_groups")
    @classmethod
    def _group_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_ids(value, GROUP_ID)

    @field_validator("seatbot_channels")
    @classmethod
    def _channel_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_ids(value, CHANNEL_ID)

    @field_validator("seatbot_audit_channel", "seatbot_idle_report_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None:
            _check_ids((value.strip(),), CHANNEL_ID)
            return value.strip()
        return value

    @field_validator("seatbot_idle_exclude")
    @classmethod
    def _exclusions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if "@" not in item or any(ch.isspace() for ch in item):
                raise ValueError(f"`{item}` is neither an email nor an @domain")
        return value

    @field_validator("seatbot_trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"`{item}` is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        """Checked here, not at the first connection: a wrong scheme stops start-up with one line."""
        if value is not None:
            scheme = urlsplit(value.get_secret_value()).scheme.lower()
            if scheme not in REDIS_SCHEMES:
                got = f"got {scheme}://" if scheme else "no scheme"
                raise ValueError(f"must start with redis://, rediss:// (TLS) or unix:// ({got})")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str | None) -> str | None:
        if value is not None:
            for item in (part.strip() for part in value.split(",")):
                host, _, port = item.rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(
                        f"`{item}` is not host:port; list each Sentinel, e.g. 10.0.0.5:26379,10.0.0.6:26379"
                    )
        return value

    @model_validator(mode="after")
    def _redis_topology(self) -> Settings:
        """Cluster and Sentinel need REDIS_URL (the password, database and TLS) and exclude each other."""
        wanted = [
            name
            for name, on in (("REDIS_CLUSTER", self.redis_cluster), ("REDIS_SENTINELS", self.redis_sentinels))
            if on
        ]
        if len(wanted) == 2:
            raise ValueError("REDIS_CLUSTER and REDIS_SENTINELS: set one (a cluster fails over by itself)")
        if wanted and self.redis_url is None:
            raise ValueError(
                f"{wanted[0]} needs REDIS_URL too (redis:// or rediss://, with the password and database)"
            )
        if wanted and urlsplit(self.redis_url.get_secret_value() if self.redis_url else "").scheme == "unix":
            raise ValueError(f"{wanted[0]} needs a redis:// or rediss:// REDIS_URL, not unix://")
        if self.redis_sentinels and not self.sentinel_service:
            raise ValueError(
                "REDIS_SENTINELS needs REDIS_SENTINEL_SERVICE (the name Sentinel monitors, e.g. mymaster)"
            )
        return self

    @property
    def sentinel_service(self) -> str | None:
        """The primary's name in Sentinel: REDIS_SENTINEL_SERVICE, else REDIS_URL's host
        (`redis://:password@mymaster/0`, as redis-rb and Sidekiq write it)."""
        if self.redis_sentinel_service:
            return self.redis_sentinel_service
        return urlsplit(self.redis_url.get_secret_value()).hostname if self.redis_url else None

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        found = []
        for item in (part.strip() for part in (self.redis_sentinels or "").split(",") if part.strip()):
            host, _, port = item.rpartition(":")
            found.append((host.strip("[]"), int(port)))
        return found

    @field_validator("cloudflare_base_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("seatbot_log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("seatbot_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as UTC or Europe/Paris") from None
        return value

    @field_validator("seatbot_idle_report_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError("must be a five-field cron expression, e.g. `0 9 * * 1` (Mondays 09:00 UTC)")
        return value

    @field_validator("cloudflare_account_id")
    @classmethod
    def _account_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]+", value):
            raise ValueError("must be letters and digits (the 32-character account ID)")
        return value

    @field_validator("redis_tls_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        """Read once here, so a wrong path stops start-up instead of failing every connection."""
        if value is not None:
            try:
                pem = value.read_text(encoding="ascii", errors="replace")
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror or type(exc).__name__}") from None
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise ValueError(f"{value} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        return value

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        if self.redis_tls_ca_file is None:
            return self
        url = self.redis_url.get_secret_value() if self.redis_url is not None else ""
        if not url.lower().startswith("rediss://"):
            raise ValueError("REDIS_TLS_CA_FILE is set but REDIS_URL is not rediss:// (TLS)")
        if self.redis_tls_insecure:
            raise ValueError(
                "REDIS_TLS_CA_FILE and REDIS_TLS_INSECURE: set one (a CA file verifies, insecure does not)"
            )
        return self

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.cloudflare_api_token is None and (self.cloudflare_email is None) != (
            self.cloudflare_api_key is None
        ):
            missing = "CLOUDFLARE_API_KEY" if self.cloudflare_api_key is None else "CLOUDFLARE_EMAIL"
            raise ValueError(f"{missing} is required with the other half of the email + key pair")
        return self

    # -- derived ---------------------------------------------------------------------------

    @property
    def has_cloudflare_credentials(self) -> bool:
        return bool(self.cloudflare_api_token or (self.cloudflare_email and self.cloudflare_api_key))

    def cloudflare_auth_headers(self) -> dict[str, str]:
        """Exactly one scheme: the token wins over email + key, with a warning naming the pair."""
        token = self.cloudflare_api_token
        if token is not None and token.get_secret_value():
            if self.cloudflare_email or self.cloudflare_api_key:
                log.warning(
                    "both CLOUDFLARE_API_TOKEN and CLOUDFLARE_EMAIL/CLOUDFLARE_API_KEY are set; "
                    "using the token, ignoring CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY"
                )
            return {"Authorization": f"Bearer {token.get_secret_value()}"}
        if self.cloudflare_email and self.cloudflare_api_key:
            return {
                "X-Auth-Email": self.cloudflare_email,
                "X-Auth-Key": self.cloudflare_api_key.get_secret_value(),
            }
        raise ConfigError("CLOUDFLARE_API_TOKEN: not set (or set CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY)")

    def missing(self, *names: str) -> list[str]:
        """The names among `names` that are not set (blank counts as unset)."""
        gone = []
        for name in names:
            value = getattr(self, name.lower())
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if not value:
                gone.append(name.upper())
        return gone

    def require(self, *names: str) -> None:
        """Stop with one line naming every missing setting among `names`."""
        gone = self.missing(*names)
        if gone:
            raise ConfigError(f"{', '.join(gone)}: not set")

    def require_cloudflare(self) -> None:
        """The account and one complete credential scheme, or one ConfigError naming what is missing."""
        self.require("CLOUDFLARE_ACCOUNT_ID")
        self.cloudflare_auth_headers()

    def _value(self, name: str) -> str:
        self.require(name)
        value = getattr(self, name.lower())
        return str(value.get_secret_value() if isinstance(value, SecretStr) else value)

    def bot_token(self) -> str:
        return self._value("SLACK_BOT_TOKEN")

    def app_token(self) -> str:
        return self._value("SLACK_APP_TOKEN")

    def signing_secret(self) -> str:
        return self._value("SLACK_SIGNING_SECRET")

    def account_id(self) -> str:
        return self._value("CLOUDFLARE_ACCOUNT_ID")

    def secrets(self) -> list[str]:
        """Every configured secret value (each `SecretStr` field, the Redis password), for the redactor."""
        found = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
        urls = [self.cloudflare_base_url, self.slack_api_url]
        if self.redis_url is not None:
            urls.append(self.redis_url.get_secret_value())
        for url in urls:  # a password in a URL (Redis, a proxy with a login), as written and decoded
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)] if unquote(password) != password else [password]
        return found


def _optional_fields() -> frozenset[str]:
    """Fields whose default is None: for these a blank value means unset."""
    return frozenset(name for name, info in Settings.model_fields.items() if info.default is None)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings; every invalid one becomes part of a single ConfigError line naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where.upper() if where else 'settings'}: {message}")
        raise ConfigError("; ".join(dict.fromkeys(problems))) from None
