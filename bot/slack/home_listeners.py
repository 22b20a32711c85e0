"""The App Home tab: published on `app_home_opened`, and again after a cancel clicked on it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.app.home import Home
from bot.app.schedule import Schedules
from bot.logs import request_scope
from bot.slack.home import home_view

log = logging.getLogger("seatbot.home")


def register_home(
    app: AsyncApp, *, home: Home, client: AsyncWebClient, schedules: Schedules | None = None
) -> None:
    async def publish(user: str) -> None:
        try:
            await client.views_publish(user_id=user, view=home_view(await home.overview(user)))
        except SlackApiError as exc:
            log.warning("views.publish failed: %s", exc.response.get("error"))

    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab") != "home":
            return
        with request_scope():
            try:
                await publish(str(event.get("user", "")))
            except Exception:
                log.exception("App Home failed")

    @app.action("home_unschedule")
    async def home_unschedule(ack: AsyncAck, body: dict[str, Any]) -> None:
        """A cancel button on the Home: the same checks and announcement as `/seat scheduled`'s."""
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        entry_id = str(((body.get("actions") or [{}])[0]).get("value", ""))[:64]
        with request_scope():
            try:
                if schedules is not None:  # refuses non-admins itself
                    metrics.click("home_unschedule", await schedules.unschedule(entry_id, user=user))
                await publish(user)
            except Exception:
                log.exception("cancel from the App Home failed")
                metrics.click("home_unschedule", "error")
