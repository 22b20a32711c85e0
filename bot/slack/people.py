"""The Slack side of `policy.Directory`: user emails and user-group members from the Web API."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("seatbot.slack")


class SlackDirectory:
    """users.info (needs users:read + users:read.email) and usergroups.users.list (usergroups:read)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def email_of(self, user_id: str) -> str | None:
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user_id, exc.response.get("error"))
            return None
        user = response.get("user") or {}
        email = (user.get("profile") or {}).get("email")
        return str(email) if email else None

    async def members_of(self, group_id: str) -> frozenset[str]:
        response = await self._client.usergroups_users_list(usergroup=group_id)
        return frozenset(str(u) for u in response.get("users") or [])
