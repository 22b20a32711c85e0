"""Structured JSON log lines with a request id, and a redactor so secrets never reach a log."""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_MASK = "[redacted]"


def redact_url(url: str) -> str:
    """`url` with its user-info (`user:password@`, a proxy's login) replaced, for printing."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = _MASK + "@" + parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextmanager
def request_scope(rid: str | None = None) -> Iterator[str]:
    """Tag every log line inside with one request id (a click and its work share it)."""
    value = rid or secrets.token_hex(6)
    token = request_id.set(value)
    try:
        yield value
    finally:
        request_id.reset(token)


class Redactor:
    """Replaces every known secret value in a string. Shared by logs and Slack-bound text."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)

    def add(self, values: Iterable[str]) -> None:
        self._values = sorted(set(self._values) | {v for v in values if len(v) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, _MASK)
        return text


redact = Redactor()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id.get(),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class _RedactFilter(logging.Filter):
    """Also scrubs records seen by other handlers (pytest's caplog, a platform's handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup_logging(level: str = "INFO", *, secrets_: Iterable[str] = (), stream: Any = None) -> None:
    """JSON lines on stderr; idempotent so several entry points can call it."""
    redact.add(secrets_)
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if getattr(handler, "_seatbot", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RedactFilter())
    handler._seatbot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # our adapter logs each call itself
    # The audit lines are the durable record (README, Production deploy): a quieter level never drops them.
    logging.getLogger("seatbot.audit").setLevel(min(logging.INFO, root.level))
