"""Plain data: Cloudflare's seats and users, pending confirmations, claims and audit event names.

Nothing here does I/O; the Redis store, the Cloudflare adapter and the renderers all share these."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from bot.errors import OutdatedRecord

SEAT_UID_RE = re.compile(r"^[A-Za-z0-9-]{1,36}$")


def check_seat_uid(value: str) -> str:
    """Seat UIDs are 1-36 letters, digits or '-' (Cloudflare's maxLength 36; UUIDs in practice)."""
    if not SEAT_UID_RE.fullmatch(value):
        raise ValueError("seat_uid must be 1-36 characters of letters, digits and '-'")
    return value


class SeatUpdate(BaseModel):
    """One element of the PATCH body: both flags false removes the user from their seat."""

    model_config = ConfigDict(frozen=True)

    seat_uid: str
    access_seat: bool = False
    gateway_seat: bool = False

    @field_validator("seat_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return check_seat_uid(value)


class Seat(BaseModel):
    """A seat as Cloudflare returned it after an update."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    seat_uid: str
    access_seat: bool | None = None
    gateway_seat: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None
    cf_ray: str | None = None  # the response it came from, for the audit trail

    @property
    def removed(self) -> bool:
        return self.access_seat is False and self.gateway_seat is False


class AccessUser(BaseModel):
    """A Zero Trust user (GET /access/users)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str | None = None
    uid: str | None = None
    seat_uid: str | None = None
    email: str | None = None
    name: str | None = None
    access_seat: bool | None = None
    gateway_seat: bool | None = None
    active_device_count: float | None = None
    last_successful_login: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    cf_ray: str | None = None

    @property
    def has_no_seat(self) -> bool:
        """Both flags already false: there is no seat to remove (unknown flags do not count)."""
        return self.access_seat is False and self.gateway_seat is False


# Of a stored Pending; a record with another version is refused as outdated (never acted on), so a
# release never reads a card whose fields it does not know. Bump it with every change of fields.
# 1: up to scheduled removals (`sweep`, then `at` and `tz`, were added without a bump);
# 2: the same fields as the last release of 1, with the bump they should have had;
# 3: `named_requester` (a workflow's requester input: a claim) and `approved_by` (the first of the
#    two admins a workflow card needs under the two-person rule).
FORMAT_VERSION = 3
# Read as current: every field of 1 is in 2, and a field 1 lacked defaults to what 1 meant
# (no `at`: revoke now). A release that changes a field's meaning raises this floor too.
OLDEST_READABLE = 1
READABLE = tuple(range(OLDEST_READABLE, FORMAT_VERSION + 1))
_ID_CHARS = frozenset("0123456789abcdef")


# The requester of a card made by a Workflow Builder run: nobody Slack identified. Under the
# two-person rule such a card needs two different admins' clicks (approve, then confirm).
WORKFLOW_REQUESTER = "workflow"


@dataclass
class PendingTarget:
    """One seat on a card, with what was known of it when the card was made."""

    label: str  # what the requester typed (email, mention, uid)
    seat_uid: str
    email: str | None = None
    name: str | None = None
    access_seat: bool | None = None
    gateway_seat: bool | None = None


@dataclass
class Pending:
    """A confirmation waiting for its click; stored as JSON under a random 128-bit id."""

    id: str
    requester: str
    channel: str
    targets: list[PendingTarget]
    reason: str | None
    created_at: float
    expires_at: float
    two_person: bool = False
    attempt: int = 1  # 2+ when a failed revoke offered a fresh try
    sweep: int = 0  # an idle sweep of this many seats (the list is kept beside it: bot.state.sweeps)
    at: float | None = None  # set: confirming schedules the removal for this time (bot/app/schedule.py)
    tz: str = "UTC"  # the time zone `at` was written in
    # A Workflow Builder card has no requester Slack vouches for (requester is WORKFLOW_REQUESTER):
    # who the workflow named is kept as the claim it is, and under the two-person rule one admin
    # approves (approved_by) and another confirms.
    named_requester: str | None = None
    approved_by: str | None = None
    v: int = FORMAT_VERSION

    __pydantic_config__ = ConfigDict(extra="forbid")  # an unknown field is another format

    @property
    def in_channel(self) -> bool:
        """The card is shown in the channel (two-person rule, or a workflow posted it there)."""
        return self.two_person or self.requester == WORKFLOW_REQUESTER

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Pending:
        """The stored record (a readable older version as the current one), or OutdatedRecord when
        it is of a version this release does not know or cannot be read."""
        try:
            data = json.loads(raw)
        except ValueError:
            raise OutdatedRecord("a pending record that is not JSON") from None
        if not isinstance(data, dict) or data.get("v") not in READABLE:
            v = data.get("v") if isinstance(data, dict) else None
            raise OutdatedRecord(f"a pending record of format version {v!r}, not {READABLE}")
        data["v"] = FORMAT_VERSION
        try:
            return _PENDING.validate_python(data)
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise OutdatedRecord(f"a pending record whose fields do not fit: {fields}") from None


_PENDING = TypeAdapter(Pending)

ClaimStatus = Literal[
    "claimed", "missing", "outdated", "own_request", "not_requester", "busy", "approved", "own_approval"
]


@dataclass(frozen=True)
class Claim:
    """What a click got: the record when `claimed`, else why not (and the record, to explain)."""

    status: ClaimStatus
    pending: Pending | None = None
    wait: int = 0  # `busy`: seconds until the clicker's earlier claim may be resumed


def new_id() -> str:
    return secrets.token_hex(16)  # 128 bits


def valid_id(value: str) -> bool:
    return len(value) == 32 and set(value) <= _ID_CHARS


AuditEvent = Literal[
    "requested",
    "approved",  # the first of two admins on a workflow card (two-person rule)
    "confirmed",
    "cancelled",
    "expired_click",
    "refused",
    "succeeded",
    "failed",
    "outdated",
    "skipped",
    "deferred",
    "scheduled",
    "unscheduled",
    "already_removed",
    "redis_wiped",
]
