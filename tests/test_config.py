"""Settings: validation with one ConfigError line naming the variable, auth schemes, secrets, lists."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "cf-token-SECRET-9f8e7d"
API_KEY = "cf-key-SECRET-1a2b3c"
EMAIL = "ops@example.com"


pytestmark = pytest.mark.usefixtures("isolated_env")  # nothing from the shell or a .env


def load(**overrides: object) -> Settings:
    return load_settings(_env_file=None, **overrides)


def test_env_file_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env is read by default, and _env_file=None really keeps it out (what the tests rely on)."""
    (tmp_path / ".env").write_text("CLOUDFLARE_ACCOUNT_ID=fromdotenv\n")
    assert load_settings().cloudflare_account_id == "fromdotenv"
    assert load().cloudflare_account_id is None


def test_account_id_over_32_chars_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 33-character CLOUDFLARE_ACCOUNT_ID stops start-up with a ConfigError naming it."""
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "a" * 33)
    with pytest.raises(ConfigError, match=r"^CLOUDFLARE_ACCOUNT_ID: .*32"):
        load()


def test_account_id_must_be_alphanumeric() -> None:
    """An account id with path characters is refused, naming CLOUDFLARE_ACCOUNT_ID."""
    with pytest.raises(ConfigError, match=r"^CLOUDFLARE_ACCOUNT_ID: "):
        load(cloudflare_account_id="../../zones")


def test_account_id_of_32_chars_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real 32-character account id loads; blank means unset."""
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    assert load().cloudflare_account_id == ACCOUNT
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "  ")
    assert load().cloudflare_account_id is None


def test_token_wins_over_email_and_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With both schemes set only the Bearer header is used, and a warning names the ignored pair."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CLOUDFLARE_EMAIL", EMAIL)
    monkeypatch.setenv("CLOUDFLARE_API_KEY", API_KEY)
    caplog.set_level(logging.WARNING, logger="seatbot.config")
    headers = load().cloudflare_auth_headers()
    assert headers == {"Authorization": f"Bearer {TOKEN}"}
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "CLOUDFLARE_EMAIL" in warning.getMessage() and "CLOUDFLARE_API_KEY" in warning.getMessage()
    assert TOKEN not in caplog.text and API_KEY not in caplog.text


def test_token_alone_gives_bearer_header_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A token alone gives the Authorization header and no warning."""
    caplog.set_level(logging.WARNING, logger="seatbot.config")
    assert load(cloudflare_api_token=TOKEN).cloudflare_auth_headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_email_and_key_give_the_x_auth_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Email + key (no token) give exactly X-Auth-Email and X-Auth-Key."""
    monkeypatch.setenv("CLOUDFLARE_EMAIL", EMAIL)
    monkeypatch.setenv("CLOUDFLARE_API_KEY", API_KEY)
    assert load().cloudflare_auth_headers() == {"X-Auth-Email": EMAIL, "X-Auth-Key": API_KEY}


@pytest.mark.parametrize(
    ("present", "missing"),
    [("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY"), ("CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL")],
)
def test_half_a_pair_is_a_config_error(monkeypatch: pytest.MonkeyPatch, present: str, missing: str) -> None:
    """Only one half of email + key stops start-up with a ConfigError naming the missing half."""
    monkeypatch.setenv(present, EMAIL if present == "CLOUDFLARE_EMAIL" else API_KEY)
    with pytest.raises(ConfigError, match=missing) as caught:
        load()
    assert API_KEY not in str(caught.value)


def test_no_credentials_is_a_config_error_when_headers_are_needed() -> None:
    """No scheme at all loads (the sandbox case) but asking for headers names CLOUDFLARE_API_TOKEN."""
    settings = load()
    assert not settings.has_cloudflare_credentials
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        settings.cloudflare_auth_headers()


def test_secrets_stay_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """SecretStr values never show in repr(), str() or a model dump of the settings."""
    secrets = {
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_API_KEY": API_KEY,
        "SLACK_SIGNING_SECRET": "signing-SECRET-42",
        "SLACK_BOT_TOKEN": "xoxb-SECRET-42",
        "SLACK_APP_TOKEN": "xapp-SECRET-42",
        "REDIS_URL": "redis://:redis-SECRET-42@localhost:6379/0",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLOUDFLARE_EMAIL", EMAIL)
    settings = load()
    shown = "\n".join([repr(settings), str(settings), repr(settings.model_dump())])
    for value in secrets.values():
        assert value not in shown
    assert "redis-SECRET-42" not in shown
    assert settings.cloudflare_api_token is not None
    assert settings.cloudflare_api_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("U1, U2", ("U1", "U2")), ("U1", ("U1",)), (" U1 ,, U2 , ", ("U1", "U2")), ("", ())],
)
def test_comma_lists_parse(monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]) -> None:
    """SEATBOT_ADMINS and friends are comma lists: trimmed, empty entries dropped."""
    monkeypatch.setenv("SEATBOT_ADMINS", raw)
    monkeypatch.setenv("SEATBOT_CHANNELS", raw.replace("U", "C"))  # channel IDs start with C
    settings = load()
    assert settings.seatbot_admins == expected
    assert settings.seatbot_channels == tuple(item.replace("U", "C") for item in expected)


def test_comma_lists_accept_kwargs() -> None:
    """A string or a tuple passed directly parses the same way as the environment."""
    assert load(seatbot_admin_groups="S1, S2").seatbot_admin_groups == ("S1", "S2")
    assert load(seatbot_admin_groups=("S1",)).seatbot_admin_groups == ("S1",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLOUDFLARE_CHUNK_SIZE", "0"),
        ("CLOUDFLARE_RETRY_DEADLINE_SECONDS", "0"),
        ("CLOUDFLARE_MAX_PAGES", "0"),
        ("SEATBOT_CONFIRM_TTL_SECONDS", "3600"),
        ("PORT", "not-a-port"),
    ],
)
def test_out_of_range_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Each malformed setting becomes one ConfigError line starting with the variable's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"^{name}: "):
        load()


def test_require_names_the_missing_setting() -> None:
    """require() stops with the first unset setting's name."""
    settings = load(cloudflare_api_token=TOKEN)
    settings.require("CLOUDFLARE_API_TOKEN")
    with pytest.raises(ConfigError, match=r"^CLOUDFLARE_ACCOUNT_ID: not set"):
        settings.require("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID")


def test_secrets_lists_configured_credentials() -> None:
    """secrets() returns the configured secret values (and the Redis password) for the log redactor."""
    settings = load(
        cloudflare_api_token=TOKEN,
        slack_bot_token="xoxb-1",
        redis_url="redis://default:redis-pw-42@localhost:6379/0",
    )
    assert set(settings.secrets()) >= {TOKEN, "xoxb-1", "redis-pw-42"}
    assert "" not in load(cloudflare_api_token=TOKEN).secrets()


def test_blank_token_does_not_hide_half_a_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLOUDFLARE_API_TOKEN= (blank, as in a .env template) plus only CLOUDFLARE_EMAIL still fails at load."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "")
    monkeypatch.setenv("CLOUDFLARE_EMAIL", EMAIL)
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_KEY"):
        load()


@pytest.mark.parametrize(
    "name", ["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_KEY", "SLACK_BOT_TOKEN", "REDIS_URL"]
)
def test_blank_secret_means_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A blank secret variable loads as None, not as an empty SecretStr."""
    monkeypatch.setenv(name, "  ")
    assert getattr(load(), name.lower()) is None


def test_rediss_with_insecure_tls_relaxes_verification_only_when_asked() -> None:
    """rediss:// verifies certificates by default; REDIS_TLS_INSECURE turns that off for self-signed ones."""
    from bot.state.redis import connect_redis

    strict = connect_redis(Settings(_env_file=None, redis_url="rediss://:pw@redis.example:6380/0"))
    relaxed = connect_redis(
        Settings(_env_file=None, redis_url="rediss://:pw@redis.example:6380/0", redis_tls_insecure=True)
    )
    strict_kwargs = strict.connection_pool.connection_kwargs
    relaxed_kwargs = relaxed.connection_pool.connection_kwargs
    assert strict.connection_pool.connection_class.__name__ == "SSLConnection"
    assert strict_kwargs.get("ssl_cert_reqs", "required") == "required"
    assert relaxed_kwargs["ssl_cert_reqs"] == "none" and relaxed_kwargs["ssl_check_hostname"] is False
    assert strict_kwargs["socket_timeout"] == 1.0


# What each Slack-ID setting's error shows: what an ID looks like and where Slack shows it.
ID_HELP = {
    "SEATBOT_ADMINS": ("U0123ABCDE", "Copy member ID"),
    "SEATBOT_ADMIN_GROUPS": ("S0123ABCDE", "Copy group ID"),
    "SEATBOT_CHANNELS": ("C0123ABCDE", "About tab"),
    "SEATBOT_AUDIT_CHANNEL": ("C0123ABCDE", "About tab"),
    "SEATBOT_IDLE_REPORT_CHANNEL": ("C0123ABCDE", "About tab"),
}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SEATBOT_ADMINS", "alice@example.com", "`alice@example.com` is an email"),
        ("SEATBOT_ADMINS", "u0abc", "`u0abc` must be in capitals (U0ABC)"),
        ("SEATBOT_ADMINS", "<@U0ABC>", "`<@U0ABC>` is a mention (write U0ABC)"),
        ("SEATBOT_ADMINS", "U0OK, @alice, C0123", "`@alice` is a display name, `C0123` is a channel ID"),
        ("SEATBOT_ADMIN_GROUPS", "<!subteam^S0123|@oncall>", "is a mention (write S0123)"),
        ("SEATBOT_CHANNELS", "#it-offboarding", "`#it-offboarding` is a channel name"),
        ("SEATBOT_CHANNELS", "C0OK, it-offboarding", "`it-offboarding` is not an ID"),
        ("SEATBOT_AUDIT_CHANNEL", "#audit", "`#audit` is a channel name"),
        ("SEATBOT_IDLE_REPORT_CHANNEL", "U0123ABCD", "`U0123ABCD` is a member ID"),
    ],
)
def test_slack_ids_are_checked_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    """A name, an email, a mention or lower case where a Slack ID belongs stops start-up with one line
    naming the setting and each bad entry, what an ID looks like and where to find it (these used to
    load, and then every command was refused)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and says in message and "\n" not in message
    example, where = ID_HELP[name]
    assert example in message and where in message
    assert "U0OK" not in message and "C0OK" not in message  # good entries are not blamed


def test_real_slack_ids_load() -> None:
    """Member (U…, W…), user-group (S…) and channel (C…, G…, D…) IDs load as they are."""
    settings = load(
        seatbot_admins="U024BE7LH, W0123ABCD",
        seatbot_admin_groups="S0614TZR7",
        seatbot_channels="C0123ABCD, G0123ABCD, D0123ABCD",
        seatbot_audit_channel="C0AUDIT",
        seatbot_idle_report_channel="G0REPORT",
    )
    assert settings.seatbot_admins == ("U024BE7LH", "W0123ABCD")
    assert settings.seatbot_channels == ("C0123ABCD", "G0123ABCD", "D0123ABCD")
    assert (settings.seatbot_audit_channel, settings.seatbot_idle_report_channel) == ("C0AUDIT", "G0REPORT")
