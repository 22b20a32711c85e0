"""/healthz, /readyz and /metrics for the processes that serve no HTTP of their own: Socket Mode, jobs.

A small aiohttp server on SEATBOT_HEALTH_PORT, inside the process's own event loop: aiohttp is
already loaded by these processes (Slack's socket and the response_url poster use it), and its
AppRunner/TCPSite are made to be embedded, with no signal handling of their own (uvicorn's Server
installs its own). Answering from the same loop is itself the liveness proof: a loop that is stuck
answers nothing. What each path says is bot/ops/probes.py's, as on the HTTP process.
"""

from __future__ import annotations

import errno
import logging

from aiohttp import web

from bot.config import Settings
from bot.errors import ConfigError
from bot.ops.probes import CONTENT_TYPE, UNAUTHORIZED, Probes

log = logging.getLogger("seatbot.health")


class HealthServer:
    def __init__(self, probes: Probes, *, host: str, port: int) -> None:
        self.probes = probes
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.probes.metrics_token:
            app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health checks on %s:%d (GET /healthz, /readyz)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        answer = await self.probes.live()
        return web.json_response(answer.body, status=answer.status)

    async def _readyz(self, request: web.Request) -> web.Response:
        answer = await self.probes.ready()
        return web.json_response(answer.body, status=answer.status)

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.probes.allowed(request.headers.get("Authorization")):
            text = "metrics need Authorization: Bearer <SEATBOT_METRICS_TOKEN>\n"
            return web.Response(status=401, text=text, headers=UNAUTHORIZED)
        return web.Response(body=await self.probes.metrics(), headers={"Content-Type": CONTENT_TYPE})


async def start_health(settings: Settings, probes: Probes) -> HealthServer | None:
    """The listener when SEATBOT_HEALTH_PORT is set (None otherwise), already listening."""
    if settings.seatbot_health_port is None:
        return None
    server = HealthServer(probes, host=settings.seatbot_health_host, port=settings.seatbot_health_port)
    try:
        await server.start()
    except OSError as exc:  # one line naming the setting, as for PORT (bot/ops/startup.py)
        await server.stop()
        where = f"{server.host}:{server.port}"
        why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or "cannot be bound")
        raise ConfigError(f"SEATBOT_HEALTH_PORT: {where} {why}") from None
    return server
