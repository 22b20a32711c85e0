"""The HTTP face: POST /slack/events (commands and interactivity), GET /healthz, /readyz, /metrics."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.ops.probes import CONTENT_TYPE, UNAUTHORIZED, Probes
from bot.slack.edge import EdgeLimits, SlackEdge
from bot.slack.server import settle_heap
from bot.slack.wiring import build_slack


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
            unverified_bytes=settings.seatbot_unverified_body_bytes,
            read_timeout=settings.seatbot_read_timeout_seconds,
        ),
    )

    probes = Probes(runtime)

    async def healthz(request: Request) -> Response:
        answer = await probes.live()
        return JSONResponse(answer.body, status_code=answer.status)

    async def readyz(request: Request) -> Response:
        answer = await probes.ready()
        return JSONResponse(answer.body, status_code=answer.status)

    async def scrape(request: Request) -> Response:
        if not probes.allowed(request.headers.get("authorization")):
            return Response("metrics need Authorization: Bearer <SEATBOT_METRICS_TOKEN>\n", 401, UNAUTHORIZED)
        return Response(await probes.metrics(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start_jobs()  # the job runner: schedules, paused sweeps, the directory's refresh
        settle_heap()
        metrics.STARTS.labels("serve").inc()
        yield
        await runtime.aclose()

    app = Starlette(
        routes=[
            Route("/slack/events", edge.handle, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *([Route("/metrics", scrape, methods=["GET"])] if probes.metrics_token else []),
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
