"""A stand-in for Cloudflare's two seat operations, as an ASGI app.

Used by the tests (through `httpx.ASGITransport` or a real port) and by the local shell when no
Cloudflare credentials are configured. It keeps real state (a PATCH changes what the next GET
returns), checks credentials the way Cloudflare does, answers bad input with the failure envelope,
matches `email=` loosely like a search would, and has knobs to inject faults and latency. It can
enforce Cloudflare's rolling rate limit (429 + Retry-After + the failure envelope, `Ratelimit` /
`Ratelimit-Policy` headers on every answer) and hold a large synthetic account cheaply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Unpack

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN, DEMO_USERS, demo_user
from bot.devtools.sandbox_faults import Fault, FaultSpec, failure, make_fault, new_ray
from bot.devtools.synthetic import SyntheticUsers


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class Sandbox:
    """Cloudflare's seats PATCH and users GET with real state. `app` is the ASGI app."""

    def __init__(
        self,
        *,
        account_id: str = DEMO_ACCOUNT_ID,
        token: str | None = DEMO_TOKEN,
        email: str | None = None,
        api_key: str | None = None,
        users: Iterable[Mapping[str, Any]] | None = None,
        latency: float = 0.0,
        clock: Callable[[], datetime] = _now,
        synthetic: int = 0,
        rate_limit: int | None = None,
        rate_window: float = 300.0,
        rate_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account_id = account_id
        self.token = token
        self.email = email
        self.api_key = api_key
        self.latency = latency
        self.hold: asyncio.Event | None = None  # set: requests wait for it (tests pause mid-call) …
        self.hold_from = 0  # … once this many requests were received (let the first ones through)
        self.clock = clock
        self.users: dict[str, dict[str, Any]] = {}
        seed = (
            users if users is not None else [demo_user(e, n, index=i) for i, (e, n) in enumerate(DEMO_USERS)]
        )
        for user in seed:
            self.add_user(user)
        self.synthetic = SyntheticUsers(synthetic)  # listed after `users`
        self.rate_limit = rate_limit  # None: no limit enforced
        self.rate_window = rate_window
        self.rate_clock = rate_clock
        self._hits: deque[float] = deque()
        self.rate_peak = 0  # most requests seen in one window
        self.rejected = 0  # answered 429 by the rate limit
        self.faults: deque[Fault] = deque()
        self.omit: set[str] = set()  # seat UIDs a PATCH silently leaves out of `result` (not updated)
        self.garble: set[str] = set()  # seat UIDs a PATCH updates but returns with seat_uid null
        self.requests: list[RecordedRequest] = []
        self.applied_at: deque[float] = deque(maxlen=100)  # wall clock of each applied PATCH (benchmarks)
        base = "/client/v4/accounts/{account_id}/access"
        self.app = Starlette(
            routes=[
                Route(f"{base}/seats", self._seats, methods=["PATCH"]),
                Route(f"{base}/users", self._users, methods=["GET"]),
                Route("/_sandbox", self._knobs, methods=["GET", "PUT"]),
            ]
        )

    # -- knobs -----------------------------------------------------------------------------

    def add_user(self, user: Mapping[str, Any]) -> dict[str, Any]:
        record = dict(user)
        self.users[str(record["seat_uid"])] = record
        return record

    def inject(self, *, times: int = 1, **spec: Unpack[FaultSpec]) -> None:
        """Serve `times` failures before the real answers (429 + Retry-After, 5xx, odd bodies)."""
        fault = make_fault(**spec)
        self.faults.extend(dataclasses.replace(fault) for _ in range(times))

    def remove_user(self, seat_uid: str) -> bool:
        """The user holding `seat_uid` leaves the account (explicit or synthetic)."""
        if self.users.pop(seat_uid, None) is not None:
            return True
        return self.synthetic.remove(seat_uid)

    def find_user(self, seat_uid: str) -> dict[str, Any] | None:
        return self.users.get(seat_uid) or self.synthetic.get(seat_uid)

    @property
    def user_count(self) -> int:
        return len(self.users) + len(self.synthetic)

    def seed(self, count: int) -> list[str]:
        """Add `count` numbered demo users (user001@example.com, …); returns their emails."""
        emails = [f"user{n:03d}@example.com" for n in range(1, count + 1)]
        for n, email in enumerate(emails):
            self.add_user(demo_user(email, f"Demo User {n + 1}", index=n))
        return emails

    async def _knobs(self, request: Request) -> Response:
        """Knobs over HTTP for a sandbox on a port (benchmarks, demos): latency, seeding, counters."""
        if request.method == "PUT":
            body = await request.json()
            if "latency" in body:
                self.latency = float(body["latency"])
            if "seed" in body:
                self.seed(int(body["seed"]))
            if "synthetic" in body:
                self.synthetic.resize(int(body["synthetic"]))
            if "rate_limit" in body:
                self.rate_limit = int(body["rate_limit"]) if body["rate_limit"] else None
            if "rate_window" in body:
                self.rate_window = float(body["rate_window"])
            if body.get("reset_requests"):
                self.requests.clear()
                self._hits.clear()
                self.rate_peak = self.rejected = 0
        methods: dict[str, int] = {}
        for r in self.requests:
            methods[r.method] = methods.get(r.method, 0) + 1
        return JSONResponse(
            {
                "latency": self.latency,
                "users": self.user_count,
                "requests": methods,
                "rate_limit": self.rate_limit,
                "rate_peak": self.rate_peak,
                "rejected": self.rejected,
                "applied_at": list(self.applied_at),
            }
        )

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    base_url = "http://sandbox.test/client/v4"

    @property
    def patches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PATCH"]

    # -- handlers --------------------------------------------------------------------------

    async def _common(self, request: Request) -> Response | None:
        body: Any = None
        raw = await request.body()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        recorded = RecordedRequest(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        self.requests.append(recorded)
        request.state.recorded = recorded  # its own body: requests[-1] may be another's by now
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.hold is not None and len(self.requests) > self.hold_from:
            await self.hold.wait()
        for index, fault in enumerate(self.faults):
            if request.method in fault.methods:
                if fault.skip > 0:
                    fault.skip -= 1
                    break
                del self.faults[index]
                return Response(
                    fault.body,
                    status_code=fault.status,
                    headers={**fault.headers, "cf-ray": new_ray()},
                    media_type=fault.content_type,
                )
        return self._rate() or self._auth(request) or self._account(request)

    def _rate(self) -> Response | None:
        """Cloudflare's rolling window: past the limit, 429 + Retry-After until the oldest call ages out."""
        if not self.rate_limit:
            return None
        now = self.rate_clock()
        while self._hits and self._hits[0] <= now - self.rate_window:
            self._hits.popleft()
        if len(self._hits) >= self.rate_limit:
            self.rejected += 1
            wait = str(max(1, math.ceil(self._hits[0] + self.rate_window - now)))
            return failure(
                429,
                971,
                "Please wait and consider throttling your request speed",
                **{"Retry-After": wait, **self._rate_headers(now)},
            )
        self._hits.append(now)
        self.rate_peak = max(self.rate_peak, len(self._hits))
        return None

    def _rate_headers(self, now: float | None = None) -> dict[str, str]:
        """The IETF-draft headers Cloudflare sends: remaining quota and seconds until more frees up."""
        if not self.rate_limit:
            return {}
        now = self.rate_clock() if now is None else now
        reset = math.ceil(self._hits[0] + self.rate_window - now) if self._hits else 0
        remaining = max(0, self.rate_limit - len(self._hits))
        return {
            "Ratelimit": f'"default";r={remaining};t={max(0, reset)}',
            "Ratelimit-Policy": f'"default";q={self.rate_limit};w={math.ceil(self.rate_window)}',
        }

    def _auth(self, request: Request) -> Response | None:
        bearer = request.headers.get("authorization")
        key, email = request.headers.get("x-auth-key"), request.headers.get("x-auth-email")
        if bearer and (key or email):
            return failure(400, 6003, "Invalid request headers: send one authentication scheme")
        if bearer:
            if self.token is not None and bearer == f"Bearer {self.token}":
                return None
            return failure(401, 10000, "Authentication error")
        if key or email:
            if self.api_key is not None and (email, key) == (self.email, self.api_key):
                return None
            return failure(403, 9103, "Unknown X-Auth-Key or X-Auth-Email")
        return failure(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")

    def _account(self, request: Request) -> Response | None:
        account = request.path_params["account_id"]
        if len(account) > 32:
            return failure(400, 7003, "Could not route: the account identifier is invalid")
        if account != self.account_id:
            return failure(
                404, 7003, "Could not route to this account, perhaps your object identifier is invalid?"
            )
        return None

    def _ok(self, result: Any, **extra: Any) -> Response:
        body = {"success": True, "errors": [], "messages": [], "result": result, **extra}
        return JSONResponse(body, headers={"cf-ray": new_ray(), **self._rate_headers()})

    async def _seats(self, request: Request) -> Response:
        problem = await self._common(request)
        if problem is not None:
            return problem
        body = request.state.recorded.body
        if not isinstance(body, list):
            return failure(400, 10001, "Request body must be a JSON array of seats")
        for item in body:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("seat_uid"), str)
                or len(item["seat_uid"]) > 36
                or not isinstance(item.get("access_seat"), bool)
                or not isinstance(item.get("gateway_seat"), bool)
            ):
                return failure(400, 10001, "Each seat needs seat_uid, access_seat and gateway_seat")
        now = _stamp(self.clock())
        result = []
        for item in body:
            user = self.find_user(item["seat_uid"])
            if user is None or item["seat_uid"] in self.omit:
                continue  # Cloudflare leaves unknown seats out of `result`
            fields = {
                "access_seat": item["access_seat"],
                "gateway_seat": item["gateway_seat"],
                "updated_at": now,
            }
            if item["seat_uid"] in self.users:
                user.update(fields)
            else:
                user = self.synthetic.update(item["seat_uid"], **fields) or user
            seat = {
                k: user[k] for k in ("access_seat", "gateway_seat", "seat_uid", "created_at", "updated_at")
            }
            if item["seat_uid"] in self.garble:
                seat["seat_uid"] = None
            result.append(seat)
        self.applied_at.append(time.time())
        return self._ok(result)

    async def _users(self, request: Request) -> Response:
        problem = await self._common(request)
        if problem is not None:
            return problem
        query = request.query_params
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "25"))
        except ValueError:
            return failure(400, 10001, "page and per_page must be integers")
        if page < 1 or per_page < 1 or per_page > 1000:
            return failure(400, 10001, "page and per_page must be at least 1 (per_page at most 1000)")
        start, stop = (page - 1) * per_page, page * per_page
        filters = [(n, query[n]) for n in ("email", "name", "search") if query.get(n)]
        if not filters:  # the whole list: explicit users, then the synthetic ones (never all built)
            explicit = list(self.users.values())
            total = len(explicit) + len(self.synthetic)
            chunk = explicit[start:stop]
            if len(chunk) < per_page:
                offset = max(0, start - len(explicit))
                chunk += self.synthetic.slice(offset, offset + per_page - len(chunk))
        else:
            users = self._filtered(filters)
            total = len(users)
            chunk = users[start:stop]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": total,
            "total_pages": max(1, -(-total // per_page)),
        }
        return self._ok(chunk, result_info=info)

    def _filtered(self, filters: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """A search, not an exact match: `alice@` also finds `malice@`."""
        fields = {"email": ("email",), "name": ("name",), "search": ("email", "name")}

        def hit(u: Mapping[str, Any], name: str, needle: str) -> bool:
            return any(needle.casefold() in str(u.get(f, "")).casefold() for f in fields[name])

        first, needle = filters[0]
        users = [u for u in self.users.values() if hit(u, first, needle)]
        seen = {u["seat_uid"] for u in users}
        for f in fields[first]:
            for u in self.synthetic.matching(f, needle):
                if u["seat_uid"] not in seen:
                    seen.add(u["seat_uid"])
                    users.append(u)
        return [u for u in users if all(hit(u, n, v) for n, v in filters[1:])]
