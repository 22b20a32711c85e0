"""Cloudflare's seat and user shapes, as the adapter returns them."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

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
