"""Say why a network call failed, in words an operator can act on: which host:port and what happened.

Only the host, port and the kind of failure are reported: never a URL's path, query or password.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

_DNS = ("name or service not known", "nodename nor servname", "name resolution", "getaddrinfo", "no address")
_DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379}


def endpoint(url: str) -> str:
    """`host:port` of a URL (the scheme's default port when none is given)."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    return f"{parts.hostname or '?'}:{port}"


def why(exc: BaseException) -> str:
    """The kind of failure: DNS, refused, timed out, TLS, reset; else the exception's class name."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 6:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e).lower() for e in chain)
    kinds = {type(e).__name__ for e in chain}
    if any(marker in text for marker in _DNS) or "ClientConnectorDNSError" in kinds or "gaierror" in kinds:
        return "host name not found (DNS)"
    if "connection refused" in text or any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused (nothing listening there)"
    if any(isinstance(e, TimeoutError | asyncio.TimeoutError) for e in chain) or "timed out" in text:
        return "no answer in time"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "certificate" in text or "ssl" in text:
        return "TLS handshake failed (certificate or protocol)"
    if "reset" in text or any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection reset"
    return type(exc).__name__
