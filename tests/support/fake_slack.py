"""A local stand-in for Slack's Web API and response_urls, served over real HTTP (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

from aiohttp import web


class FakeSlack:
    """Records every Web API call and every response_url post; knobs for errors and 429s."""

    def __init__(self) -> None:
        self.emails: dict[str, str] = {}
        self.groups: dict[str, list[str]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.posts: list[dict[str, Any]] = []
        self.completions: list[tuple[str, dict[str, Any]]] = []  # functions.complete{Success,Error}
        self.updates: list[dict[str, Any]] = []  # chat.update
        self.post_error: str | None = None  # e.g. "not_in_channel"
        self.rate_limit_posts = 0  # answer this many chat.postMessage calls with 429
        self.retry_after = "1"
        self.fail_posts = 0  # answer this many chat.postMessage calls with HTTP 500 and an HTML body
        self.fail_channels: set[str] = set()  # chat.postMessage to these answers HTTP 500 until removed
        self.failure_content_type = "text/html"  # a broken proxy may even call its HTML page JSON
        self.refused_posts: list[dict[str, Any]] = []  # chat.postMessage calls answered 429 or 500
        self.reject_in_channel = False  # answer in_channel response_url posts with 404 (an expired URL)
        self.reject_responses = False  # answer every response_url post with 404
        self.latency = 0.0  # seconds added before every answer (Slack 100 ms away)
        self.post_answer_delay = 0.0  # a post shows in the channel this long before its caller hears back
        self.ephemerals: list[dict[str, Any]] = []
        self.received_at: dict[str, list[float]] = defaultdict(list)  # wall clock per response_url post
        self.files: dict[str, dict[str, Any]] = {}  # file id → filename, length, content, channel, title
        self.file_error: str | None = None  # e.g. "not_in_channel" from files.completeUploadExternal
        self.views: list[dict[str, Any]] = []  # views.publish calls: user_id and the parsed view
        self.token_error: str | None = None  # e.g. "invalid_auth" from auth.test, apps.connections.open
        self.sockets: list[web.WebSocketResponse] = []  # Socket Mode connections open now
        self.refuse_sockets = False  # answer Socket Mode's WebSocket with 503 (Slack unreachable)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, port: int = 0) -> None:
        app = web.Application(client_max_size=1 << 30)  # uploads: Slack takes files up to 1 GB
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response)
        app.router.add_post("/redirect/{key}", self._redirect)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/_responses/{key}", self._recorded)
        app.router.add_get("/_times/{key}", self._times)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.drop_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def response_url(self, key: str) -> str:
        return f"{self.url}/response/{key}"

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        async with self._changed:
            self.calls.append((method, args))
            self._changed.notify_all()
        if method in ("auth.test", "apps.connections.open") and self.token_error:
            return web.json_response({"ok": False, "error": self.token_error})
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": self.url.replace("http", "ws") + "/socket"})
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "user_id": "UBOT",
                    "user": "seatbot",
                    "team_id": "T1",
                    "team": "Test",
                    "bot_id": "B1",
                }
            )
        if method == "users.info":
            user = str(args.get("user"))
            if user not in self.emails:
                return web.json_response({"ok": False, "error": "user_not_found"})
            profile = {"email": self.emails[user], "real_name": user}
            return web.json_response({"ok": True, "user": {"id": user, "profile": profile}})
        if method == "usergroups.users.list":
            group = str(args.get("usergroup"))
            if group not in self.groups:
                return web.json_response({"ok": False, "error": "no_such_subteam"})
            return web.json_response({"ok": True, "users": self.groups[group]})
        if method == "chat.postMessage":
            if self.fail_posts > 0 or args.get("channel") in self.fail_channels:
                self.fail_posts = max(0, self.fail_posts - 1)
                self.refused_posts.append(args)
                page = "<html><body><h1>500 Internal Server Error</h1></body></html>"
                return web.Response(status=500, text=page, content_type=self.failure_content_type)
            if self.rate_limit_posts > 0:
                self.rate_limit_posts -= 1
                self.refused_posts.append(args)
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": self.retry_after},
                )
            if self.post_error:
                return web.json_response({"ok": False, "error": self.post_error})
            async with self._changed:
                self.posts.append(args)
                self._changed.notify_all()
            if self.post_answer_delay:
                await asyncio.sleep(self.post_answer_delay)
            return web.json_response({"ok": True, "channel": args.get("channel"), "ts": "1.0"})
        if method == "chat.postEphemeral":
            async with self._changed:
                self.ephemerals.append(args)
                self._changed.notify_all()
            return web.json_response({"ok": True, "message_ts": "1.0"})
        if method.startswith("files.") or method == "views.publish":
            return await self._files_and_views(method, args)
        if method.startswith("functions.") or method == "chat.update":
            return await self._functions_and_updates(method, args, request.headers.get("Authorization", ""))
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _functions_and_updates(self, method: str, args: dict[str, Any], auth: str) -> web.Response:
        """functions.completeSuccess / completeError (a custom workflow step ends once) and chat.update."""
        if method == "chat.update":
            if not args.get("channel") or not args.get("ts"):
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            async with self._changed:
                self.updates.append(args)
                self._changed.notify_all()
            return web.json_response({"ok": True, "channel": args["channel"], "ts": args["ts"]})
        if method not in ("functions.completeSuccess", "functions.completeError"):
            return web.json_response({"ok": False, "error": "unknown_method"})
        execution = str(args.get("function_execution_id") or "")
        needed = "outputs" if method.endswith("Success") else "error"
        if not execution or needed not in args:
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        if any(done["function_execution_id"] == execution for _, done in self.completions):
            return web.json_response({"ok": False, "error": "function_execution_not_found"})  # ended already
        record = {**args, "token": auth.removeprefix("Bearer ")}
        if isinstance(record.get("outputs"), str):
            record["outputs"] = json.loads(record["outputs"])
        async with self._changed:
            self.completions.append((method, record))
            self._changed.notify_all()
        return web.json_response({"ok": True})

    async def _files_and_views(self, method: str, args: dict[str, Any]) -> web.Response:
        """Files upload v2 (get URL → POST the bytes → complete) and views.publish, as Slack checks them."""
        if method == "files.getUploadURLExternal":
            if not args.get("filename") or not str(args.get("length", "")).isdigit():
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            file_id = f"F{len(self.files) + 1:08d}"
            self.files[file_id] = {
                "filename": args["filename"],
                "length": int(args["length"]),
                "content": None,
            }
            return web.json_response(
                {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
            )
        if method == "files.completeUploadExternal":
            if self.file_error:
                return web.json_response({"ok": False, "error": self.file_error})
            listed = json.loads(str(args.get("files", "[]")))
            done = []
            for item in listed:
                record = self.files.get(str(item.get("id")))
                if record is None or record["content"] is None:
                    return web.json_response({"ok": False, "error": "file_not_found"})
                async with self._changed:
                    record.update(channel=args.get("channel_id"), title=item.get("title"), completed=True)
                    self._changed.notify_all()
                done.append({"id": item["id"], "title": item.get("title"), "name": record["filename"]})
            return web.json_response({"ok": True, "files": done})
        if method == "views.publish":
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            if not args.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            if len(view.get("blocks", [])) > 100:
                return web.json_response({"ok": False, "error": "invalid_blocks"})
            async with self._changed:
                self.views.append({"user_id": args["user_id"], "view": view})
                self._changed.notify_all()
            return web.json_response({"ok": True, "view": {"id": "V1", **view}})
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: takes the bytes, which must be exactly the announced length."""
        record = self.files.get(request.match_info["file_id"])
        body = await request.read()
        if record is None:
            return web.Response(status=404, text="not found")
        if len(body) != record["length"]:
            return web.Response(status=400, text="length mismatch")
        record["content"] = body
        return web.Response(text="OK - " + str(len(body)))

    def uploaded(self) -> list[dict[str, Any]]:
        """Completed uploads, in order: filename, title, channel and content (bytes)."""
        return [f for f in self.files.values() if f.get("completed")]

    async def _response(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.reject_responses:
            return web.Response(status=404, text="expired_url")
        if self.reject_in_channel and body.get("response_type") == "in_channel":
            return web.Response(status=404, text="expired_url")
        async with self._changed:
            self.responses[request.match_info["key"]].append(body)
            self.received_at[request.match_info["key"]].append(time.time())
            self._changed.notify_all()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        """Socket Mode's WebSocket (the URL apps.connections.open hands out): hello, then idle."""
        if self.refuse_sockets:
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async with self._changed:
            self.sockets.append(ws)
            self._changed.notify_all()
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        async for _ in ws:  # pings are answered by aiohttp; nothing else is sent in these tests
            pass
        return ws

    async def drop_sockets(self) -> None:
        """Close every Socket Mode connection, as Slack does when it goes away."""
        for ws in list(self.sockets):
            await ws.close()
        self.sockets.clear()

    async def _redirect(self, request: web.Request) -> web.Response:
        """A response_url that redirects elsewhere: a bot that follows it would post to /response/."""
        raise web.HTTPTemporaryRedirect(f"/response/{request.match_info['key']}")

    async def _times(self, request: web.Request) -> web.Response:
        """When each response_url post to `key` was recorded (wall clock), for the benchmark."""
        return web.json_response(self.received_at.get(request.match_info["key"], []))

    async def _recorded(self, request: web.Request) -> web.Response:
        """For a fake Slack in another process (the benchmark): what a response_url received."""
        return web.json_response(self.responses.get(request.match_info["key"], []))

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_responses(self, key: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.responses[key]) >= count, timeout)
        return self.responses[key]


async def _serve(port: int, latency: float = 0.0) -> None:
    fake = FakeSlack()
    fake.latency = latency
    await fake.start(port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
