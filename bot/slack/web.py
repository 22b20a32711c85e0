"""The HTTP face: POST /slack/events (commands and interactivity) and GET /healthz."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import __version__
from bot.config import Settings, load_settings
from bot.directory_sync import directory_health
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.slack.edge import EdgeLimits, SlackEdge
from bot.slack.server import settle_heap
from bot.slack.wiring import build_slack
from bot.state.redis import redis_status


def build_app(settings: Settings, *, seats_transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """The Starlette app for these settings (tests pass a transport to reach the sandbox)."""
    settings.require("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN")
    # the edge checks signatures on the raw bytes, so Bolt does not check them again
    runtime, bolt = build_slack(settings, verify_signatures=False, seats_transport=seats_transport)
    edge = SlackEdge(
        bolt,
        signing_secret=settings.signing_secret(),
        limits=EdgeLimits(
            max_body_bytes=settings.seatbot_max_body_bytes,
            read_timeout=settings.seatbot_read_timeout_seconds,
        ),
    )

    async def healthz(request: Request) -> Response:
        store = "in-process" if runtime.in_process_store else await redis_status(runtime.redis)
        ok = store != "unreachable"
        body = {
            "ok": ok,
            "redis": store,
            "version": __version__,
            "directory": await directory_health(runtime.directory_sync),
        }
        pause = await runtime.budget.pause() if runtime.budget is not None else None
        if pause is not None:  # only while one runs: Cloudflare asked every process to wait
            body["cloudflare_pause"] = pause.as_json()
        return JSONResponse(body, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start_jobs()  # the job runner: schedules, paused sweeps, the directory's refresh
        settle_heap()
        yield
        await runtime.aclose()

    app = Starlette(
        routes=[
            Route("/slack/events", edge.handle, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


def create_app() -> Starlette:
    """uvicorn factory (`uvicorn --factory bot.slack.web:create_app`): settings from the environment."""
    try:
        settings = load_settings()
        setup_logging(settings.seatbot_log_level, secrets_=settings.secrets())
        settings.require_cloudflare()
        return build_app(settings)
    except ConfigError as exc:
        print(f"seatbot: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
