"""Who a Cloudflare request is spent for, carried with the work that makes it.

Most requests are interactive: an admin waiting in Slack. Work started by someone who is not an
admin (a Workflow Builder run) must not spend the room admins need, yet it reaches Cloudflare
through the same look-ups (targets, seat UIDs, the client). Instead of threading a lane through every
call, the work runs inside `charged(...)`: a context variable the rate budget reads when it takes a
slot (bot/cloudflare/budget.py). asyncio copies it into every task the work gathers, and it ends
with the block, so a request made elsewhere is never charged by mistake.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

SpendLane = Literal["workflow", "bulk"]


@dataclass(frozen=True)
class Quota:
    """At most `per_minute` Cloudflare requests per calendar minute for `name` (e.g. one runner)."""

    name: str
    per_minute: int
    what: str  # for the refusal: "this workflow's runner", "all workflows"


@dataclass(frozen=True)
class Spend:
    lane: SpendLane
    quotas: tuple[Quota, ...] = ()


_current: ContextVar[Spend | None] = ContextVar("seatbot_spend", default=None)


def current() -> Spend | None:
    return _current.get()


@contextlib.contextmanager
def charged(lane: SpendLane, *quotas: Quota) -> Iterator[None]:
    """Cloudflare requests made inside this block go on `lane` and count against `quotas`. Inside
    another charge the outer one stays: a scan inside a workflow run is still the workflow's."""
    if _current.get() is not None:
        yield
        return
    token = _current.set(Spend(lane, tuple(quotas)))
    try:
        yield
    finally:
        _current.reset(token)
