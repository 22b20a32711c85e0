"""Redis over TLS with a private CA (REDIS_TLS_CA_FILE): a real redis-server speaking only TLS, with
a certificate from a CA made here. Verified against the CA the bot connects; without it, it does not
and `check` says where to point; a wrong CA file stops start-up."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.state.redis import connect_redis, redis_status
from tests.support.servers import free_port, run_bot

OPENSSL = shutil.which("openssl")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = [
    pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (it makes the test CA)"),
    pytest.mark.usefixtures("isolated_env"),
]


def openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_server_cert(where: Path) -> None:
    """ca.crt, and server.crt/server.key for 127.0.0.1 signed by it (plus other.crt: an unrelated CA)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=seatbot test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=where)  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=another CA",
            "-keyout", "other.key", "-out", "other.crt", cwd=where)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr", cwd=where)  # fmt: skip
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=where)  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(rediss:// URL, folder with ca.crt and other.crt) of a redis-server that speaks only TLS."""
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
    where = tmp_path_factory.mktemp("tls")
    make_ca_and_server_cert(where)
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
        + ["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"]
        + ["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(where)],
        cwd=where,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(where / "ca.crt"))
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "TLS redis-server did not start"
                time.sleep(0.05)
        client.close()
        yield f"rediss://127.0.0.1:{port}/0", where
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def settings(url: str, **values: Any) -> Settings:
    return Settings(_env_file=None, redis_url=url, **values)


async def test_private_ca_file_verifies_the_server(tls_redis: tuple[str, Path]) -> None:
    """With REDIS_TLS_CA_FILE the certificate is verified against that CA and PING works; without it
    (the system's CAs) or with another CA's file, the connection is refused by verification."""
    url, certs = tls_redis
    verified = connect_redis(settings(url, redis_tls_ca_file=certs / "ca.crt"))
    assert await redis_status(verified) == "ok"
    await verified.set("seatbot:tls-probe", "1")
    assert await verified.get("seatbot:tls-probe") == b"1"
    await verified.aclose()
    for untrusted in (settings(url), settings(url, redis_tls_ca_file=certs / "other.crt")):
        client = connect_redis(untrusted)
        assert await redis_status(client) == "unreachable"
        await client.aclose()


def test_check_says_tls_failed_and_names_the_ca_setting(tls_redis: tuple[str, Path], tmp_path: Path) -> None:
    url, certs = tls_redis
    bad = run_bot("check", cwd=tmp_path, env={"REDIS_URL": url})
    assert "FAIL redis: cannot reach 127.0.0.1:" in bad.stdout and "TLS handshake failed" in bad.stdout
    assert "REDIS_TLS_CA_FILE" in bad.stdout
    good = run_bot("check", cwd=tmp_path, env={"REDIS_URL": url, "REDIS_TLS_CA_FILE": str(certs / "ca.crt")})
    assert "OK   redis: PING ok at 127.0.0.1:" in good.stdout, good.stdout


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"redis_tls_ca_file": "/nonexistent/ca.pem"}, "REDIS_TLS_CA_FILE: cannot read /nonexistent/ca.pem"),
        ({"redis_tls_ca_file": "{certs}/san.ext"}, "holds no PEM certificate"),
        ({"redis_tls_ca_file": "{certs}/ca.crt", "redis_url": "redis://127.0.0.1:1/0"}, "is not rediss://"),
        ({"redis_tls_ca_file": "{certs}/ca.crt", "redis_tls_insecure": True}, "set one"),
    ],
)
def test_wrong_ca_settings_stop_start_up(
    tls_redis: tuple[str, Path], values: dict[str, Any], says: str
) -> None:
    """A CA file that is missing, not PEM, on a plain redis:// URL or beside REDIS_TLS_INSECURE: one line."""
    url, certs = tls_redis
    given = {k: v.format(certs=certs) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(ConfigError, match=says) as caught:
        load_settings(_env_file=None, **{"redis_url": url, **given})
    assert "\n" not in str(caught.value)
