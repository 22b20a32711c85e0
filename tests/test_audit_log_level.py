"""The audit's JSON log lines are the durable record (README, Production deploy): SEATBOT_LOG_LEVEL
set to WARNING or ERROR quiets everything else, never them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import fakeredis
import pytest

from bot.logs import setup_logging
from bot.state.audit import Audit


@pytest.fixture
def quiet_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging("ERROR", stream=stream)
    yield stream
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_seatbot", False)]
    root.setLevel(logging.WARNING)
    logging.getLogger("seatbot.audit").setLevel(logging.NOTSET)


async def test_audit_lines_survive_a_quiet_log_level(quiet_logs: io.StringIO) -> None:
    await Audit(fakeredis.FakeAsyncRedis()).record("requested", user="U0ALICE", seats=["seat-1"])
    logging.getLogger("seatbot.flow").info("an ordinary INFO line")
    lines = [json.loads(line) for line in quiet_logs.getvalue().splitlines()]
    assert [line["logger"] for line in lines] == ["seatbot.audit"]
    assert lines[0]["audit"]["event"] == "requested" and lines[0]["audit"]["user"] == "U0ALICE"
