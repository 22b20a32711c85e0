"""What the sandbox answers when something goes wrong: Cloudflare's failure envelope and injected faults
(429 + Retry-After, 5xx, an HTML error page, an envelope without errors), served before the real answers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from starlette.responses import JSONResponse, Response


@dataclass
class Fault:
    """One injected answer, served instead of the real one."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    methods: tuple[str, ...] = ("GET", "PATCH")
    skip: int = 0  # let this many matching requests through first


class FaultSpec(TypedDict, total=False):
    """What `Sandbox.inject` can vary (defaults: a 503 with one error, on GET and PATCH)."""

    status: int
    retry_after: str | None  # a Retry-After header
    retry_after_ms: str | None  # a retry-after-ms header
    empty_errors: bool  # the failure envelope without errors
    html: bool  # an HTML error page instead of JSON
    code: int
    message: str
    methods: tuple[str, ...]
    skip: int  # let this many matching requests through first


def make_fault(**spec: Unpack[FaultSpec]) -> Fault:
    """One fault as `Sandbox.inject` describes it."""
    status, methods, skip = (
        spec.get("status", 503),
        spec.get("methods", ("GET", "PATCH")),
        spec.get("skip", 0),
    )
    headers: dict[str, str] = {}
    if (retry_after := spec.get("retry_after")) is not None:
        headers["Retry-After"] = retry_after
    if (retry_after_ms := spec.get("retry_after_ms")) is not None:
        headers["retry-after-ms"] = retry_after_ms
    if spec.get("html", False):
        body = b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
        return Fault(status, body, headers, "text/html", methods, skip)
    error = {"code": spec.get("code", 10000), "message": spec.get("message", "injected failure")}
    body = json.dumps(failure_body([] if spec.get("empty_errors", False) else [error])).encode()
    return Fault(status, body, headers, "application/json", methods, skip)


def failure_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The envelope Cloudflare wraps every failure in."""
    return {"success": False, "errors": errors, "messages": [], "result": None}


def new_ray() -> str:
    """A cf-ray header value, marked as the sandbox's."""
    return uuid.uuid4().hex[:16] + "-SBX"


def failure(status: int, code: int, message: str, **headers: str) -> Response:
    """Cloudflare's failure envelope: `success: false` and one error with its code."""
    body = failure_body([{"code": code, "message": message}])
    return JSONResponse(body, status_code=status, headers={"cf-ray": new_ray(), **headers})
