"""Who may do what: admins by user ID or by Slack user group, and the allowed channels."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.config import Settings

log = logging.getLogger("seatbot.policy")


class Directory(Protocol):
    """What the flow needs to know about chat users (Slack in production, a table in the shell)."""

    async def email_of(self, user_id: str) -> str | None: ...

    async def members_of(self, group_id: str) -> frozenset[str]: ...


@dataclass(frozen=True)
class Policy:
    admins: frozenset[str] = frozenset()
    admin_groups: tuple[str, ...] = ()
    channels: frozenset[str] = frozenset()
    two_person: bool = False
    require_reason: bool = False
    confirm_ttl: int = 600

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            admins=frozenset(settings.seatbot_admins),
            admin_groups=tuple(settings.seatbot_admin_groups),
            channels=frozenset(settings.seatbot_channels),
            two_person=settings.seatbot_two_person,
            require_reason=settings.seatbot_require_reason,
            confirm_ttl=settings.seatbot_confirm_ttl_seconds,
        )

    @property
    def configured(self) -> bool:
        return bool(self.admins or self.admin_groups)

    def channel_allowed(self, channel: str) -> bool:
        return not self.channels or channel in self.channels


class Authorizer:
    """Answers "is this user an admin?", caching group members briefly (Slack rate limits)."""

    def __init__(
        self,
        policy: Policy,
        directory: Directory,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._directory = directory
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def is_admin(self, user_id: str) -> bool:
        if user_id in self.policy.admins:
            return True
        for group in self.policy.admin_groups:
            if user_id in await self._members(group):
                return True
        return False

    async def _members(self, group: str) -> frozenset[str]:
        now = self._clock()
        cached = self._groups.get(group)
        if cached and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            members = await self._directory.members_of(group)
        except Exception as exc:  # a failed look-up must refuse, never grant
            log.warning("could not list members of user group %s: %s", group, type(exc).__name__)
            return frozenset()
        self._groups[group] = (now, members)
        return members
