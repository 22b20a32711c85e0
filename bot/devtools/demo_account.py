"""The sandbox's demo account: its id, token and the five people the shell and the tests know by name."""

from __future__ import annotations

import uuid
from typing import Any

DEMO_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
DEMO_TOKEN = "sandbox-token"  # noqa: S105 - a fixed, public demo value
DEMO_USERS = (
    ("alice@example.com", "Alice Example"),
    ("malice@example.com", "Mallory Lice"),
    ("bob@example.com", "Bob Builder"),
    ("carol@example.com", "Carol Danvers"),
    ("dave@example.com", "Dave Lister"),
)


def demo_user(email: str, name: str, *, index: int = 0) -> dict[str, Any]:
    """A user record shaped like Cloudflare's, with stable ids derived from the email."""
    return user_record(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"id:{email}")),
        uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"uid:{email}")),
        seat_uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"seat:{email}")),
        email=email,
        name=name,
        index=index,
    )


def user_record(*, id: str, uid: str, seat_uid: str, email: str, name: str, index: int) -> dict[str, Any]:
    """A seated, recently active user shaped like Cloudflare's access/users record."""
    return {
        "id": id,
        "uid": uid,
        "seat_uid": seat_uid,
        "email": email,
        "name": name,
        "access_seat": True,
        "gateway_seat": True,
        "active_device_count": 1 + index % 3,
        "last_successful_login": "2026-11-20T09:30:00Z",
        "created_at": "2025-01-15T10:00:00.000000Z",
        "updated_at": "2025-01-15T10:00:00.000000Z",
    }
