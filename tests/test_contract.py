"""Contract tests: what the adapter sends and what the sandbox answers match Cloudflare's OpenAPI."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cloudflare.client import CloudflareClient
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN, demo_user
from bot.devtools.sandbox import RecordedRequest, Sandbox
from bot.domain.models import SeatUpdate
from bot.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from tests.support.contract import (
    CF_BASE_URL,
    ContractViolation,
    Exchange,
    RecordingTransport,
    openapi,
    require_spec,
    validate_exchange,
    validate_request,
    validate_response,
)
from tests.support.servers import no_sleep

TOKEN = {"Authorization": f"Bearer {DEMO_TOKEN}"}
ADMIN_EMAIL = "ops@example.com"
API_KEY = "sandbox-global-key"
SEATS = f"/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/seats"
USERS = f"/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/users"
OK_USERS = {
    "success": True,
    "errors": [],
    "messages": [],
    "result": [demo_user("alice@example.com", "Alice Example")],
    "result_info": {"page": 1, "per_page": 100, "count": 1, "total_count": 1, "total_pages": 1},
}
FAILURE = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": []}


@pytest.fixture(scope="module", autouse=True)
def _spec_present() -> None:
    require_spec()


@pytest.fixture
def both_schemes_sandbox() -> Sandbox:
    """Accepts the demo token and the email + key pair, with enough users for two pages."""
    box = Sandbox(email=ADMIN_EMAIL, api_key=API_KEY)
    for i in range(130):
        box.add_user(demo_user(f"user{i:03d}@example.com", f"User {i}", index=i))
    return box


@pytest.fixture
def recorder(both_schemes_sandbox: Sandbox) -> RecordingTransport:
    return RecordingTransport(both_schemes_sandbox.transport())


def client(
    recorder: RecordingTransport, auth: Mapping[str, str], *, account_id: str = DEMO_ACCOUNT_ID
) -> CloudflareClient:
    return CloudflareClient(
        account_id=account_id,
        auth_headers=auth,
        base_url=CF_BASE_URL,
        transport=recorder,
        sleep=no_sleep,
        chunk_size=50,
    )


async def run_full_flow(sandbox: Sandbox, recorder: RecordingTransport) -> list[Exchange]:
    """Every operation, both auth schemes, and the failures the sandbox really produces."""
    user = sandbox.users[next(iter(sandbox.users))]
    last = list(sandbox.users.values())[-1]
    for auth in (TOKEN, {"X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": API_KEY}):
        async with client(recorder, auth) as cf:
            await cf.ping()
            assert await cf.find_users(email=user["email"])
            seats = await cf.update_seats(
                [SeatUpdate(seat_uid=user["seat_uid"]), SeatUpdate(seat_uid="unknown-seat")]
            )
            assert [s.seat_uid for s in seats] == [user["seat_uid"]]
            assert await cf.find_users_by_seat_uids([last["seat_uid"]]) is not None
            await cf.update_seats([SeatUpdate(seat_uid=uid) for uid in list(sandbox.users)[:60]])
    failures: list[tuple[Mapping[str, str], str, type[Exception]]] = [
        ({"Authorization": "Bearer wrong-token"}, DEMO_ACCOUNT_ID, AuthenticationFailed),
        ({"X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": "wrong-key"}, DEMO_ACCOUNT_ID, PermissionDenied),
        (TOKEN, "f" * 32, NotFound),
        ({**TOKEN, "X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": API_KEY}, DEMO_ACCOUNT_ID, InvalidRequest),
    ]
    for bad_auth, account, expected in failures:
        async with client(recorder, bad_auth, account_id=account) as cf:
            with pytest.raises(expected):
                await cf.find_users(email="alice@example.com")
            with pytest.raises(expected):
                await cf.update_seats([SeatUpdate(seat_uid=user["seat_uid"])])
    return recorder.exchanges


async def test_every_request_the_adapter_sends_conforms(
    both_schemes_sandbox: Sandbox, recorder: RecordingTransport
) -> None:
    """Every request of a full flow (both auth schemes, paging, chunking) matches the spec."""
    exchanges = await run_full_flow(both_schemes_sandbox, recorder)
    operations = {(e.request.method, e.request.url.path.rsplit("/", 1)[-1]) for e in exchanges}
    assert operations == {("GET", "users"), ("PATCH", "seats")}
    assert any(e.request.url.params.get("page") == "2" for e in exchanges), "paging was not exercised"
    for exchange in exchanges:
        validate_request(exchange.request)
    # The same requests as the sandbox saw them (the other input form the helper takes).
    assert len(both_schemes_sandbox.requests) == len(exchanges)
    for seen in both_schemes_sandbox.requests:
        validate_request(seen)


async def test_every_answer_the_sandbox_gives_conforms(
    both_schemes_sandbox: Sandbox, recorder: RecordingTransport
) -> None:
    """Every non-injected sandbox answer (200, 400, 401, 403, 404 envelopes) matches the spec."""
    exchanges = await run_full_flow(both_schemes_sandbox, recorder)
    assert {e.status for e in exchanges} == {200, 400, 401, 403, 404}
    for exchange in exchanges:
        validate_exchange(exchange)


@pytest.mark.no_contract
async def test_missing_auth_header_is_a_contract_violation(sandbox: Sandbox) -> None:
    """A request without credentials fails request validation; the sandbox's 400 still conforms."""
    recorder = RecordingTransport(sandbox.transport())
    async with client(recorder, {}) as cf:
        with pytest.raises(InvalidRequest):
            await cf.ping()
    (exchange,) = recorder.exchanges
    with pytest.raises(ContractViolation, match="Security"):
        validate_request(exchange.request)
    validate_response("GET", exchange.request.url.path, exchange.status, exchange.body)
    assert exchange.status == 400


def recorded(method: str, path: str, body: object = None, **headers: str) -> RecordedRequest:
    headers = {"authorization": f"Bearer {DEMO_TOKEN}", **headers}
    if body is not None:
        headers.setdefault("content-type", "application/json")
    return RecordedRequest(method, path, {}, headers, body)


def test_validator_accepts_a_well_formed_patch() -> None:
    """Baseline for the negative cases below: a correct PATCH passes."""
    validate_request(
        recorded("PATCH", SEATS, [{"seat_uid": "a" * 36, "access_seat": False, "gateway_seat": False}])
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"seat_uid": "abc", "access_seat": False, "gateway_seat": False}, "is not of type 'array'"),
        ([{"seat_uid": "a" * 40, "access_seat": False, "gateway_seat": False}], "is too long"),
        ([{"seat_uid": "abc"}], "'access_seat' is a required property"),
        ([{"seat_uid": "abc", "access_seat": "no", "gateway_seat": False}], "is not of type 'boolean'"),
    ],
    ids=["single-object", "seat-uid-40-chars", "missing-flags", "string-flag"],
)
def test_validator_rejects_bad_patch_bodies(body: object, problem: str) -> None:
    """The validator is real: a single object, a 40-char seat_uid or missing flags fail."""
    with pytest.raises(ContractViolation, match=problem):
        validate_request(recorded("PATCH", SEATS, body))


BAD_REQUESTS = {
    "empty-authorization": (
        recorded(
            "PATCH",
            SEATS,
            [{"seat_uid": "abc", "access_seat": False, "gateway_seat": False}],
            authorization="",
        ),
        "Security",
    ),
    "basic-auth": (RecordedRequest("GET", USERS, {}, {"authorization": "Basic eDp5"}, None), "Security"),
    "email-without-key": (RecordedRequest("GET", USERS, {}, {"x-auth-email": ADMIN_EMAIL}, None), "Security"),
    "page-0": (
        RecordedRequest("GET", USERS, {"page": "0"}, {"authorization": "Bearer x"}, None),
        "less than the minimum of 1",
    ),
    "page-not-int": (
        RecordedRequest("GET", USERS, {"page": "one"}, {"authorization": "Bearer x"}, None),
        "page",
    ),
    "account-id-33": (recorded("GET", f"/client/v4/accounts/{'a' * 33}/access/users"), "account_id"),
    "unknown-method": (recorded("DELETE", SEATS), "Operation delete not found"),
    "wrong-base-path": (recorded("GET", f"/accounts/{DEMO_ACCOUNT_ID}/access/users"), "not found"),
    "form-body": (
        RecordedRequest(
            "PATCH",
            SEATS,
            {},
            {"authorization": "Bearer x", "content-type": "application/x-www-form-urlencoded"},
            "seat_uid=abc",
        ),
        "mimetype not found",
    ),
}


@pytest.mark.parametrize(("request_", "problem"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_validator_rejects_bad_requests(request_: RecordedRequest, problem: str) -> None:
    """Auth scheme, query types, path parameters, operation and media type are all checked."""
    with pytest.raises(ContractViolation, match=problem):
        validate_request(request_)


def test_validator_accepts_server_relative_paths() -> None:
    """validate_response takes `/accounts/...` as well as the full `/client/v4/accounts/...`."""
    validate_response("GET", f"/accounts/{DEMO_ACCOUNT_ID}/access/users", 200, OK_USERS)
    validate_response("get", USERS, 200, json.dumps(OK_USERS).encode())


BAD_RESPONSES = {
    "seat-uid-int": (200, {**OK_USERS, "result": [{"seat_uid": 5}]}, "json", "at result/0/seat_uid"),
    "bad-email": (200, {**OK_USERS, "result": [{"email": "x"}]}, "json", "is not a 'email'"),
    "success-false-200": (200, {**OK_USERS, "success": False}, "json", "at success"),
    # what inject(empty_errors=True) sends
    "empty-errors": (401, {**FAILURE, "result": None, "errors": []}, "json", "should be non-empty"),
    "no-result": (401, FAILURE, "json", "'result' is a required property"),
    # what inject(html=True) sends
    "html-502": (502, b"<html>502</html>", "text/html", "Unknown response http status: 502"),
}


@pytest.mark.parametrize(
    ("status", "body", "content_type", "problem"), BAD_RESPONSES.values(), ids=BAD_RESPONSES
)
def test_validator_rejects_bad_responses(status: int, body: object, content_type: str, problem: str) -> None:
    """Wrong field types, formats, envelopes and undocumented statuses fail response validation."""
    content_type = "application/json" if content_type == "json" else content_type
    with pytest.raises(ContractViolation, match=re.escape(problem)):
        validate_response("GET", USERS, status, body, content_type=content_type)


@settings(max_examples=60, deadline=None)
@given(uid=st.from_regex(r"\A[A-Za-z0-9-]{1,36}\Z"), access=st.booleans(), gateway=st.booleans())
def test_every_seat_update_the_adapter_accepts_conforms(uid: str, access: bool, gateway: bool) -> None:
    """The adapter's own seat_uid rule is at least as strict as the spec (maxLength 36)."""
    update = SeatUpdate(seat_uid=uid, access_seat=access, gateway_seat=gateway)
    validate_request(recorded("PATCH", SEATS, [update.model_dump()]))


def test_spec_is_the_two_operations_from_shared() -> None:
    """The loaded spec is Cloudflare's extract with exactly the two operations the bot calls."""
    paths = openapi().spec / "paths"
    assert sorted(paths.keys()) == [
        "/accounts/{account_id}/access/seats",
        "/accounts/{account_id}/access/users",
    ]


async def test_recording_transport_passes_answers_through(sandbox: Sandbox) -> None:
    """The recorder hands the client the same status, headers and body it recorded."""
    recorder = RecordingTransport(sandbox.transport())
    async with httpx.AsyncClient(transport=recorder, base_url=CF_BASE_URL, headers=TOKEN) as http:
        response = await http.get(f"accounts/{DEMO_ACCOUNT_ID}/access/users")
    (exchange,) = recorder.exchanges
    assert response.status_code == exchange.status == 200
    assert response.json() == exchange.json()
    assert response.headers["cf-ray"] == exchange.headers["cf-ray"]
