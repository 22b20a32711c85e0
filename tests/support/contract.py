"""Contract checks against Cloudflare's official OpenAPI extract (`../shared/cloudflare/seats-openapi.json`).

Reusable from any test module::

    from tests.support.contract import RecordingTransport, require_spec, validate_exchange

    require_spec()                        # pytest.skip with a reason where ../shared is absent
    recorder = RecordingTransport(sandbox.transport())
    ...                                   # drive a CloudflareClient(transport=recorder, base_url=CF_BASE_URL)
    for exchange in recorder.exchanges:
        validate_exchange(exchange)       # raises ContractViolation (an AssertionError) with the details

`validate_request` takes a request as the sandbox recorded it (`bot.devtools.sandbox.RecordedRequest`) or an
`httpx.Request`, whose path must be the full one on the wire (`/client/v4/accounts/...`);
`validate_response(method, path, status, body)` checks one answer to `method path`, where the path may
also be relative to the spec's server (`/accounts/...`). The validator is
openapi-core: path and query parameters, the security requirement (Bearer token or X-Auth-Email +
X-Auth-Key), the request body's media type and schema, and the response schema per status.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from bot.devtools.sandbox import RecordedRequest
from tests.support.servers import CF_SPEC

CF_HOST = "https://api.cloudflare.com"
CF_SERVER_PATH = "/client/v4"
CF_BASE_URL = CF_HOST + CF_SERVER_PATH  # the spec's server URL: point clients here so paths line up


class ContractViolation(AssertionError):
    """A request or response does not conform to Cloudflare's OpenAPI."""


def require_spec() -> None:
    """Skip the calling test (or module) with a reason when the shared spec is not there."""
    if not CF_SPEC.exists():
        pytest.skip(
            f"Cloudflare OpenAPI extract not found at {CF_SPEC}: ../shared is absent (a user's clone); "
            "contract tests run in CI",
            allow_module_level=True,
        )


@functools.cache
def openapi() -> OpenAPI:
    """The parsed (and itself validated) spec, loaded once per process."""
    require_spec()
    return OpenAPI.from_file_path(str(CF_SPEC))


# -- recording -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request the client sent and the answer it got, as seen on the wire."""

    request: httpx.Request
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Wraps another transport and keeps every request/response pair in `exchanges`."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        self.exchanges.append(Exchange(request, response.status_code, response.headers, raw))
        return httpx.Response(response.status_code, headers=response.headers, content=raw, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- validation ----------------------------------------------------------------------------


def _full_path(path: str) -> str:
    """`/accounts/...` (relative to the spec's server) or already `/client/v4/accounts/...`."""
    path = "/" + path.lstrip("/")
    return path if path.startswith(CF_SERVER_PATH + "/") else CF_SERVER_PATH + path


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _describe(errors: Iterable[Exception]) -> list[str]:
    lines = []
    for error in errors:
        lines.append(f"{type(error).__name__}: {error}")
        for schema_error in getattr(error.__cause__, "schema_errors", ()) or ():
            where = "/".join(str(part) for part in schema_error.absolute_path) or "(root)"
            lines.append(f"    at {where}: {schema_error.message}")
    return lines


def _mock_request(
    method: str,
    path: str,
    *,
    query: Iterable[tuple[str, str]] = (),
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str = "",
) -> MockRequest:
    return MockRequest(
        CF_HOST,
        method.lower(),
        path,
        args=list(query),  # type: ignore[arg-type]  # werkzeug's MultiDict takes pairs
        headers=headers or {},
        data=body,
        content_type=content_type,
    )


def _as_mock(request: RecordedRequest | httpx.Request) -> MockRequest:
    if isinstance(request, httpx.Request):
        return _mock_request(
            request.method,
            request.url.path,
            query=request.url.params.multi_items(),
            headers=dict(request.headers),
            body=request.content,
            content_type=request.headers.get("content-type", ""),
        )
    if isinstance(request, RecordedRequest):
        headers = {k.lower(): v for k, v in request.headers.items()}
        return _mock_request(
            request.method,
            request.path,
            query=request.query.items(),
            headers=headers,
            body=_body_bytes(request.body),
            content_type=headers.get("content-type", ""),
        )
    raise TypeError(f"cannot validate a {type(request).__name__}")


def request_errors(request: RecordedRequest | httpx.Request) -> list[str]:
    """Every way `request` breaks the spec (empty when it conforms)."""
    return _describe(openapi().iter_request_errors(_as_mock(request)))


def validate_request(request: RecordedRequest | httpx.Request) -> None:
    """Method, path, query, auth scheme and JSON body must conform; else ContractViolation."""
    problems = request_errors(request)
    if problems:
        raise ContractViolation(
            f"{request.method} {_as_mock(request).path} breaks the contract:\n" + "\n".join(problems)
        )


def response_errors(
    method: str, path: str, status: int, body: Any, *, content_type: str = "application/json"
) -> list[str]:
    """Every way this answer to `method path` breaks the spec (empty when it conforms)."""
    request = _mock_request(method, _full_path(path))
    response = MockResponse(_body_bytes(body), status_code=status, content_type=content_type)
    return _describe(openapi().iter_response_errors(request, response))


def validate_response(
    method: str, path: str, status: int, body: Any, *, content_type: str = "application/json"
) -> None:
    """The answer's status and body must be one the spec documents; else ContractViolation.

    `body` is the raw bytes/str, or already-decoded JSON (a dict or list).
    """
    problems = response_errors(method, path, status, body, content_type=content_type)
    if problems:
        raise ContractViolation(
            f"HTTP {status} to {method.upper()} {_full_path(path)} breaks the contract:\n"
            + "\n".join(problems)
        )


def validate_exchange(exchange: Exchange) -> None:
    """Both halves of a recorded exchange conform."""
    validate_request(exchange.request)
    validate_response(
        exchange.request.method,
        exchange.request.url.path,
        exchange.status,
        exchange.body,
        content_type=exchange.headers.get("content-type", ""),
    )
