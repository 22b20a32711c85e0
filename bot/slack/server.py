"""`python -m bot serve`: uvicorn with bounds on the time to receive a request and on connections.

uvicorn has no header-read timeout (its keep-alive timer stops at the first byte), so a client that
trickles headers or a body holds its connection forever. `BoundedH11Protocol` is uvicorn's own h11
protocol with one deadline per request, armed when the connection is ready for a request and
disarmed once the whole request (headers and body) has arrived, and with two caps on open
connections: per worker, kept below the open-file limit so accept() never runs out of descriptors,
and per client address, so that one address trickling bytes into many connections cannot take the
worker's places from Slack. uvicorn's public options bound what they can (keep-alive time, header
size, which proxies may say who the client is); its `limit_concurrency` is one count for everybody,
so it cannot tell the one address from the others, hence the per-address count here. Connections
from a configured proxy are counted only in the worker's cap (the proxy is every client's address).
The asyncio "accept() out of system resource" line, logged once per pending connection when it
does, is rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import ipaddress
import logging
import resource
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from bot.config import Settings, load_settings
from bot.errors import ConfigError

log = logging.getLogger("seatbot.server")
# Descriptors kept free for Redis, Cloudflare, Slack and logs, and for connections refused at the cap
# (asyncio closes them a loop turn later). A burst larger than that can still meet EMFILE for a
# moment: the worker survives it and the line saying so is rate-limited.
FD_RESERVE = 256
REFUSED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
# Slack's requests carry ~1 KiB of headers; h11 buffers up to this much of an unfinished head per
# connection (its default 16 KiB) before answering 431.
MAX_HEAD_BYTES = 8192
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_proxy(host: str, proxies: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a unix socket or no address at all
    return any(address in net for net in proxies)


def settle_heap() -> None:
    """Put what start-up allocated out of the garbage collector's reach, once serving begins.

    Imports, clients and compiled schemas are a few hundred thousand objects that live as long as
    the process; every full collection walked them all and held the event loop ~30 ms, which under a
    burst tripled the ack p99 (docs/benchmarks.md, edge). Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def return_large_buffers(threshold: int = 65_536) -> bool:
    """Ask glibc to map every allocation of `threshold` bytes or more on its own, so it goes back to
    the system when freed.

    By default glibc raises that threshold after each large free (up to 32 MiB): request-sized
    buffers (socket reads of 256 KiB, bodies) then come from the heap, and a burst of unsigned bodies
    left hundreds of MiB resident after the connections closed (issue 18 §4). Setting it once turns
    the adjustment off. Not glibc (musl, macOS): nothing to do, False."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3
    return bool(mallopt(m_mmap_threshold, threshold))


def connection_cap(wanted: int) -> int:
    """SEATBOT_MAX_CONNECTIONS, lowered to fit under this process's open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


class RateLimitedLines(logging.Filter):
    """Lets a message starting with `prefix` through once per `every` seconds, counting the rest."""

    def __init__(
        self, prefix: str | tuple[str, ...], *, every: float = 10.0, clock: Any = time.monotonic
    ) -> None:
        super().__init__()
        self.prefix, self.every, self.clock = prefix, every, clock
        self.suppressed = 0
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more like this in the last {self.every:g} s)"
            self.suppressed = 0
        self._next = now + self.every
        return True


def limit_accept_errors() -> RateLimitedLines:
    """asyncio logs this once per pending connection while descriptors are exhausted."""
    for existing in logging.getLogger("asyncio").filters:
        if isinstance(existing, RateLimitedLines):
            return existing
    limiter = RateLimitedLines(
        (
            "socket.accept() out of system resource",
            # each such failure also schedules a retry that fails alike if the server stops meanwhile
            "Exception in callback BaseSelectorEventLoop._start_serving",
        )
    )
    logging.getLogger("asyncio").addFilter(limiter)
    return limiter


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request must fully arrive in time; connections are capped."""

    read_timeout: float = 10.0
    max_connections: int = 1000
    per_client: int = 32
    proxies: tuple[Network, ...] = ()
    by_client: ClassVar[Counter[str]] = Counter()  # open connections per peer address, in this worker

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._peer: str | None = None  # counted in `by_client`

    @classmethod
    def configure(cls, settings: Settings) -> None:
        cls.read_timeout = settings.seatbot_read_timeout_seconds
        cls.max_connections = connection_cap(settings.seatbot_max_connections)
        cls.per_client = settings.seatbot_max_connections_per_client
        cls.proxies = networks(settings.seatbot_trusted_proxies)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if len(self.connections) >= self.max_connections:
            self._refuse(
                transport, "connection refused: %d open (SEATBOT_MAX_CONNECTIONS)", len(self.connections)
            )
            return
        if host and not is_proxy(host, self.proxies):
            if self.by_client[host] >= self.per_client:
                self._refuse(
                    transport,
                    "connection refused: %d open from one address (SEATBOT_MAX_CONNECTIONS_PER_CLIENT)",
                    self.by_client[host],
                )
                return
            self._peer = host
            self.by_client[host] += 1
        super().connection_made(transport)
        self._arm()

    def _refuse(self, transport: asyncio.Transport, line: str, count: int) -> None:
        self._refused = True
        log.warning(line, count)
        transport.write(REFUSED)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._peer is not None:
            self.by_client[self._peer] -= 1
            if self.by_client[self._peer] <= 0:
                del self.by_client[self._peer]
            self._peer = None
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # the whole request is in
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # a kept-alive connection gets the same time for its next request

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection that did not send its request within %g s", self.read_timeout)
            self.transport.close()


limit_accept_errors()  # every process that serves HTTP imports this module
return_large_buffers()
log.addFilter(RateLimitedLines(("connection refused", "closed a connection")))
logging.getLogger("seatbot.edge").addFilter(RateLimitedLines("unverified bodies at their bound"))
# each worker reads the same environment as the process that checked it at start-up
with contextlib.suppress(ConfigError):
    BoundedH11Protocol.configure(load_settings())


def serve(settings: Settings) -> None:
    """uvicorn on the Procfile's port with WEB_CONCURRENCY workers and the bounded protocol."""
    import uvicorn

    cap = connection_cap(settings.seatbot_max_connections)
    if cap < settings.seatbot_max_connections:
        log.info(
            "SEATBOT_MAX_CONNECTIONS lowered to %d per worker to fit the open-file limit (ulimit -n)", cap
        )
    uvicorn.run(
        "bot.slack.web:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        http="bot.slack.server:BoundedH11Protocol",
        log_level="warning",
        access_log=False,
        # X-Forwarded-For is believed only from SEATBOT_TRUSTED_PROXIES (none by default: then the
        # client address in logs is the peer's, whatever a client writes in the header)
        proxy_headers=bool(settings.seatbot_trusted_proxies),
        forwarded_allow_ips=list(settings.seatbot_trusted_proxies),
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
