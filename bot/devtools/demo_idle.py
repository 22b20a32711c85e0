"""Synthetic idle users for the sandbox: the shell's demo, the tests and the benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.devtools.demo_account import demo_user


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def user_at(
    email: str,
    *,
    last_login: datetime | None,
    created: datetime,
    name: str = "Demo User",
    access: bool = True,
    gateway: bool = True,
) -> dict[str, Any]:
    """A Cloudflare-shaped user; `last_login=None` means never signed in (the field is absent)."""
    user = demo_user(email, name)
    user.update(access_seat=access, gateway_seat=gateway, created_at=_stamp(created))
    user.pop("last_successful_login", None)
    if last_login is not None:
        user["last_successful_login"] = _stamp(last_login)
    return user


def idle_users(count: int, *, now: datetime | None = None, prefix: str = "idle") -> list[dict[str, Any]]:
    """`count` users idle for 31 to ~400 days; every fifth never signed in."""
    now = now or datetime.now(UTC)
    users = []
    for n in range(count):
        days = 31 + (n * 53) % 370
        created = now - timedelta(days=days + 30)
        login = None if n % 5 == 4 else now - timedelta(days=days, hours=n % 24)
        users.append(user_at(f"{prefix}{n + 1:04d}@example.com", last_login=login, created=created))
    return users
