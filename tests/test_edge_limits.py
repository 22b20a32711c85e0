"""The edge under hostile load, from outside over real sockets (issue 18 §4): one address cannot hold
the worker's connections, unverified bodies together hold a bounded amount of memory, and the
client address in logs comes from X-Forwarded-For only when a configured proxy sent it."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from bot.config import Settings
from bot.domain.models import Pending, PendingTarget
from bot.domain.outcomes import Card
from bot.slack import blocks
from tests.support.harness import ADMIN, CHANNEL, action_body, command_body, sign
from tests.support.servers import clean_env, free_port, wait_http
from tests.test_server import serve

ROOT = Path(__file__).resolve().parents[1]

ATTACKER = "127.0.0.2"  # Linux answers the whole of 127/8 on loopback: another client address


@pytest.fixture(scope="module")
def slack_api() -> Iterator[str]:
    """A fake Slack in its own process (the bot checks its token with auth.test before a command)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_slack", str(port)],
        env=clean_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/_responses/x", proc=proc)
        yield f"http://127.0.0.1:{port}/api/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def signed_help(port: int) -> int:
    """A legitimate Slack request (`/seat help`, signed) from 127.0.0.1: its HTTP status."""
    body = command_body("help", user=ADMIN, channel=CHANNEL, response_url="http://127.0.0.1:9/r")
    transport = httpx.HTTPTransport(local_address="127.0.0.1")
    with httpx.Client(transport=transport, timeout=5) as http:
        response = http.post(f"http://127.0.0.1:{port}/slack/events", content=body, headers=sign(body))
    return response.status_code


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=10)


def test_one_address_cannot_keep_slack_out(
    tmp_path: Path, redis_url: str, slack_api: str, stopped: list[subprocess.Popen[bytes]]
) -> None:
    """One address opens twice the worker's connections and trickles a byte into each: it gets its
    per-address share and 503 for the rest, while a signed request from another address is answered."""
    proc, port = serve(
        tmp_path,
        redis_url,
        SLACK_API_URL=slack_api,
        SEATBOT_MAX_CONNECTIONS="40",
        SEATBOT_MAX_CONNECTIONS_PER_CLIENT="8",
        SEATBOT_READ_TIMEOUT_SECONDS="30",
    )
    stopped.append(proc)
    held: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(80):
            sock = connect(port, ATTACKER)
            sock.sendall(b"P")  # the first byte of a request that never ends
            held.append(sock)
        for sock in held:
            sock.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                refused += sock.recv(100).startswith(b"HTTP/1.1 503")
        assert signed_help(port) == 200
        assert refused == 80 - 8
    finally:
        for sock in held:
            sock.close()


def test_unverified_bodies_together_hold_a_bounded_amount(
    tmp_path: Path, redis_url: str, slack_api: str, stopped: list[subprocess.Popen[bytes]]
) -> None:
    """60 clients (60 addresses) each send 240 KiB of an unsigned 256 KiB body and stall: past 2 MiB
    held in all, the rest are answered 503 at once, and the worker's memory grows by about that bound,
    not by the 14 MiB offered. A signed request still gets through once the stalled ones time out."""
    proc, port = serve(
        tmp_path,
        redis_url,
        SLACK_API_URL=slack_api,
        SEATBOT_MAX_BODY_BYTES=str(256 * 1024),
        SEATBOT_UNVERIFIED_BODY_BYTES=str(2 * 1024 * 1024),
        SEATBOT_READ_TIMEOUT_SECONDS="5",
    )
    stopped.append(proc)
    before = rss_kb(proc.pid)
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    head += b"X-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=0\r\nContent-Length: 262144\r\n\r\n"
    held: list[socket.socket] = []
    try:
        for n in range(60):
            sock = connect(port, f"127.0.1.{n + 1}")
            sock.sendall(head + b"a" * 240 * 1024)
            held.append(sock)
        refused = 0
        for sock in held:
            sock.settimeout(1.0)
            with contextlib.suppress(TimeoutError):  # a timeout: held, waiting for the rest of its body
                refused += b" 503 " in sock.recv(200)[:20]
        grown_mb = (rss_kb(proc.pid) - before) / 1024
    finally:
        for sock in held:
            sock.close()
    assert refused >= 60 - 9  # 2 MiB / 240 KiB: at most 8 held (a 9th may get partway)
    assert grown_mb < 8, f"RSS grew {grown_mb:.1f} MB"  # 14 MB held on the old edge
    assert signed_help(port) == 200


@pytest.mark.parametrize(("trusted", "seen"), [("", "127.0.0.1"), ("127.0.0.1", "203.0.113.9")])
def test_forwarded_for_is_believed_only_from_a_configured_proxy(
    tmp_path: Path, redis_url: str, trusted: str, seen: str
) -> None:
    """X-Forwarded-For from a client that is not a configured proxy does not change the logged address."""
    proc, port = serve(tmp_path, redis_url, SEATBOT_TRUSTED_PROXIES=trusted)
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}/slack/events",
            content=b"a=1",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Slack-Signature": "v0=00"},
        )
        assert response.status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    (line,) = [json.loads(x) for x in err.decode().splitlines() if "rejected a request" in x]
    assert line["client"] == seen


def test_trusted_proxies_must_be_addresses() -> None:
    """A host name or a typo in SEATBOT_TRUSTED_PROXIES stops start-up instead of trusting nobody."""
    proxies = Settings(seatbot_trusted_proxies="10.0.0.0/8, 127.0.0.1").seatbot_trusted_proxies
    assert proxies == ("10.0.0.0/8", "127.0.0.1")
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(seatbot_trusted_proxies="lb.internal")


def test_slow_attackers_are_cut_within_the_read_deadline(
    tmp_path: Path, redis_url: str, stopped: list[subprocess.Popen[bytes]]
) -> None:
    """An address at its cap gets its places back when the deadline closes its trickling connections."""
    proc, port = serve(tmp_path, redis_url, SEATBOT_MAX_CONNECTIONS_PER_CLIENT="4")
    stopped.append(proc)
    held = [connect(port, ATTACKER) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(b"P")
        time.sleep(0.05)
        with connect(port, ATTACKER) as extra:
            extra.settimeout(2)
            assert extra.recv(100).startswith(b"HTTP/1.1 503")
        for sock in held:  # closed by the read deadline (0.5 s in these tests) …
            sock.settimeout(3)
            assert sock.recv(100) == b""
        with connect(port, ATTACKER) as again:  # … so the address is served again
            again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            again.settimeout(2)
            assert again.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def largest_click() -> int:
    """Bytes of the largest request Slack sends this bot: a click on a 50-target card (Block Kit's
    block limit and our clipping bound it) whose names are the longest non-ASCII text, form-encoded
    as Slack posts it, with the message it carries."""
    name = "漢" * 300
    email = "漢" * 240 + "@example.com"  # the longest address a person can type, in the widest script
    targets = [
        PendingTarget(label=f"{i}{email}", seat_uid=str(uuid.UUID(int=i)), email=f"{i}{email}", name=name)
        for i in range(50)
    ]
    pending = Pending("a" * 32, ADMIN, CHANNEL, targets, "漢" * 500, 0.0, 600.0, two_person=True)
    message = blocks.card(Card(pending, tuple(["漢" * 3000] * 60), error="漢" * 3000))
    body = action_body(
        "seat_confirm",
        "a" * 32,
        user=ADMIN,
        channel=CHANNEL,
        response_url="https://hooks.slack.com/actions/T1/1/x",
    )
    payload = json.loads(dict(parse_qsl(body))["payload"])
    payload["message"] = {
        "type": "message",
        "ts": "1.2",
        "text": message["text"],
        "blocks": message["blocks"],
    }
    # Slack's JSON may carry non-ASCII as UTF-8 or as \u escapes: the larger of the two
    return max(len(urlencode({"payload": json.dumps(payload, ensure_ascii=a)})) for a in (True, False))


def test_the_body_bound_fits_slacks_largest_request() -> None:
    """SEATBOT_MAX_BODY_BYTES admits the largest real request with room, and not several times it."""
    largest, bound = largest_click(), Settings().seatbot_max_body_bytes
    assert largest < bound < 2 * largest, (largest, bound)
