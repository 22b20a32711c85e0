"""The Cloudflare adapter against the sandbox: operations, validation, errors, retries and logs."""

from __future__ import annotations

import email.utils
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.transport import parse_retry_after
from bot.config import load_settings
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN, demo_user
from bot.devtools.sandbox import Sandbox
from bot.domain.models import AccessUser, SeatUpdate
from bot.errors import (
    AuthenticationFailed,
    CloudflareMessage,
    ConfigError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    SeatsError,
    Unavailable,
)
from tests.support.contract import RecordingTransport
from tests.support.flow import TOKEN_AUTH, sandbox_client
from tests.support.servers import no_sleep

ADMIN_EMAIL = "ops@example.com"
SEATS_PATH = f"/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/seats"
USERS_PATH = f"/client/v4/accounts/{DEMO_ACCOUNT_ID}/access/users"


class Sleeps:
    """An injectable sleep that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def add_users(sandbox: Sandbox, count: int) -> list[dict[str, Any]]:
    return [
        sandbox.add_user(demo_user(f"user{i:03d}@example.com", f"User {i}", index=i)) for i in range(count)
    ]


def user_by_email(sandbox: Sandbox, address: str) -> dict[str, Any]:
    return next(u for u in sandbox.users.values() if u["email"] == address)


def empty_sandbox(**kwargs: Any) -> Sandbox:
    return Sandbox(users=[], **kwargs)


# -- happy path ----------------------------------------------------------------------------


async def test_find_then_remove_one_seat(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """Finding alice and removing her seat frees both seats and the next GET shows it."""
    (alice,) = await cf.find_users(email="alice@example.com")
    assert alice.access_seat is True and alice.gateway_seat is True

    (seat,) = await cf.update_seats([SeatUpdate(seat_uid=alice.seat_uid)])

    (patch,) = sandbox.patches
    assert patch.path == SEATS_PATH
    assert patch.body == [{"seat_uid": alice.seat_uid, "access_seat": False, "gateway_seat": False}]
    assert patch.headers["content-type"] == "application/json"
    assert seat.seat_uid == alice.seat_uid
    assert seat.access_seat is False and seat.gateway_seat is False and seat.removed
    assert seat.cf_ray and seat.cf_ray.endswith("-SBX")
    (after,) = await cf.find_users(email="alice@example.com")
    assert after.access_seat is False and after.gateway_seat is False
    assert after.cf_ray and after.cf_ray != seat.cf_ray


async def test_unknown_seat_is_left_out_of_the_result(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """Cloudflare omits seats it does not know; the adapter returns only the ones it got back."""
    carol = user_by_email(sandbox, "carol@example.com")
    seats = await cf.update_seats(
        [SeatUpdate(seat_uid="no-such-seat"), SeatUpdate(seat_uid=carol["seat_uid"])]
    )
    assert [s.seat_uid for s in seats] == [carol["seat_uid"]]


async def test_ping_is_one_cheap_read(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """ping() is a single GET of one user and changes nothing."""
    await cf.ping()
    (request,) = sandbox.requests
    assert (request.method, request.path, request.query) == (
        "GET",
        USERS_PATH,
        {"page": "1", "per_page": "1"},
    )


async def test_ping_raises_on_bad_credentials(sandbox: Sandbox) -> None:
    """ping() proves credentials: a wrong token fails it."""
    async with sandbox_client(sandbox, auth={"Authorization": "Bearer nope"}) as client:
        with pytest.raises(AuthenticationFailed):
            await client.ping()


# -- chunking and pagination ---------------------------------------------------------------


async def test_updates_are_chunked_and_merged_in_order(sandbox: Sandbox) -> None:
    """120 seats with chunk_size 50 go out as PATCHes of 50, 50 and 20; results keep request order."""
    uids = [u["seat_uid"] for u in add_users(sandbox, 120)][::-1]  # not the sandbox's own order
    async with sandbox_client(sandbox, chunk_size=50) as client:
        seats = await client.update_seats([SeatUpdate(seat_uid=uid) for uid in uids])
    bodies = [p.body for p in sandbox.patches]
    assert [len(b) for b in bodies] == [50, 50, 20]
    assert [item["seat_uid"] for body in bodies for item in body] == uids
    assert [s.seat_uid for s in seats] == uids
    assert all(s.removed for s in seats)
    assert len({s.cf_ray for s in seats}) == 3  # each seat carries the ray of its own chunk's response


async def test_chunk_size_must_be_positive(sandbox: Sandbox) -> None:
    """A zero chunk size is a programming error (ValueError), refused before looping or sending."""
    with pytest.raises(ValueError, match="chunk_size"):
        sandbox_client(sandbox, chunk_size=0)


async def test_lookup_by_seat_uid_follows_pages() -> None:
    """A user on the last of three pages is found, fetching pages 1, 2, 3 at 100 per page."""
    sandbox = empty_sandbox()
    users = add_users(sandbox, 250)
    async with sandbox_client(sandbox) as client:
        found = (await client.find_users_by_seat_uids([users[-1]["seat_uid"]])).get(users[-1]["seat_uid"])
    assert isinstance(found, AccessUser) and found.email == users[-1]["email"]
    assert [(r.query["page"], r.query["per_page"]) for r in sandbox.requests] == [
        ("1", "100"),
        ("2", "100"),
        ("3", "100"),
    ]


async def test_lookup_by_seat_uid_stops_at_the_page_holding_it() -> None:
    """A user on page 1 costs one request, not a walk through every page."""
    sandbox = empty_sandbox()
    users = add_users(sandbox, 250)
    async with sandbox_client(sandbox) as client:
        found = (await client.find_users_by_seat_uids([users[5]["seat_uid"]])).get(users[5]["seat_uid"])
    assert found is not None and found.seat_uid == users[5]["seat_uid"]
    assert len(sandbox.requests) == 1


async def test_lookup_of_unknown_seat_stops_at_the_last_page() -> None:
    """An unknown seat_uid reads each page once (total_pages) and returns None."""
    sandbox = empty_sandbox()
    add_users(sandbox, 250)
    async with sandbox_client(sandbox, max_pages=50) as client:
        assert (await client.find_users_by_seat_uids(["no-such-seat"])).get("no-such-seat") is None
    assert [r.query["page"] for r in sandbox.requests] == ["1", "2", "3"]


async def test_lookup_is_bounded_by_max_pages(caplog: pytest.LogCaptureFixture) -> None:
    """With max_pages=1 a user on page 3 is not found, after one request and a warning."""
    sandbox = empty_sandbox()
    users = add_users(sandbox, 250)
    caplog.set_level(logging.WARNING, logger="seatbot.cloudflare")
    async with sandbox_client(sandbox, max_pages=1) as client:
        assert (await client.find_users_by_seat_uids([users[-1]["seat_uid"]])).get(
            users[-1]["seat_uid"]
        ) is None
    assert len(sandbox.requests) == 1
    assert any("stopped at 1 pages" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_lookup_of_several_seats_is_one_pass() -> None:
    """find_users_by_seat_uids finds users on pages 1 and 2 in one pass and stops there."""
    sandbox = empty_sandbox()
    users = add_users(sandbox, 250)
    wanted = [users[3]["seat_uid"], users[150]["seat_uid"]]
    async with sandbox_client(sandbox) as client:
        found = await client.find_users_by_seat_uids(wanted)
    assert {uid: u.email for uid, u in found.items()} == {
        users[3]["seat_uid"]: users[3]["email"],
        users[150]["seat_uid"]: users[150]["email"],
    }
    assert [r.query["page"] for r in sandbox.requests] == ["1", "2"]


async def test_lookup_of_several_seats_leaves_unknown_ones_out() -> None:
    """Unknown seat UIDs are absent from the result after every page was read once."""
    sandbox = empty_sandbox()
    users = add_users(sandbox, 250)
    async with sandbox_client(sandbox) as client:
        found = await client.find_users_by_seat_uids([users[249]["seat_uid"], "no-such-seat"])
    assert list(found) == [users[249]["seat_uid"]]
    assert [r.query["page"] for r in sandbox.requests] == ["1", "2", "3"]


async def test_find_users_follows_pages_too() -> None:
    """find_users reads every page of Cloudflare's loose matches to find the exact one."""
    sandbox = empty_sandbox()
    for i in range(150):  # n000a@... all contain "a@example.com": loose matches, not exact ones
        sandbox.add_user(demo_user(f"n{i:03d}a@example.com", f"Near {i}"))
    target = sandbox.add_user(demo_user("a@example.com", "Exact"))  # listed last: page 2
    async with sandbox_client(sandbox) as client:
        found = await client.find_users(email="a@example.com")
    assert [u.seat_uid for u in found] == [target["seat_uid"]]
    assert [r.query["page"] for r in sandbox.requests] == ["1", "2"]


# -- exact email match ---------------------------------------------------------------------


async def test_sandbox_email_filter_is_loose(sandbox: Sandbox) -> None:
    """Precondition for the next tests: the stand-in's email= also returns malice@ for alice@."""
    async with httpx.AsyncClient(transport=sandbox.transport(), headers=TOKEN_AUTH) as http:
        response = await http.get(f"http://sandbox.test{USERS_PATH}", params={"email": "alice@example.com"})
    assert {u["email"] for u in response.json()["result"]} == {"alice@example.com", "malice@example.com"}


@pytest.mark.parametrize("address", ["alice@example.com", "ALICE@Example.com", "  alice@example.com "])
async def test_find_users_matches_exactly_and_ignores_case(
    cf: CloudflareClient, sandbox: Sandbox, address: str
) -> None:
    """find_users returns alice only (never malice@), whatever the case of the address."""
    users = await cf.find_users(email=address)
    assert [u.email for u in users] == ["alice@example.com"]
    assert sandbox.requests[0].query["email"] == address.strip()


async def test_find_users_unknown_address_is_empty(cf: CloudflareClient) -> None:
    """No exact match gives an empty list, not the loose matches."""
    assert await cf.find_users(email="lice@example.com") == []


# -- validation before any request ---------------------------------------------------------

BAD_SEAT_UIDS = ["a" * 37, "bad uid", "", "abc/../def", "abc\n", "seat_uid", "ü" * 3]


@pytest.mark.parametrize("seat_uid", BAD_SEAT_UIDS, ids=repr)
async def test_bad_seat_uid_is_refused_before_sending(
    cf: CloudflareClient, sandbox: Sandbox, seat_uid: str
) -> None:
    """A malformed seat_uid cannot become a SeatUpdate, and a look-up refuses it without any request."""
    with pytest.raises(ValidationError, match="seat_uid"):
        SeatUpdate(seat_uid=seat_uid)
    with pytest.raises(InvalidRequest, match="seat_uid"):
        await cf.find_users_by_seat_uids([seat_uid])
    with pytest.raises(InvalidRequest, match="seat_uid"):
        await cf.find_users_by_seat_uids(["abc", seat_uid])
    assert sandbox.requests == []


async def test_one_bad_seat_stops_the_whole_batch(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """Anything but SeatUpdates (here a raw dict at position 100 of 120) means no chunk at all is sent."""
    updates: list[Any] = [SeatUpdate(seat_uid=f"seat-{i}") for i in range(120)]
    updates[100] = {"seat_uid": "seat-100"}
    with pytest.raises(TypeError):
        await cf.update_seats(updates)
    assert sandbox.requests == []


async def test_36_char_seat_uid_is_accepted(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """The boundary: 36 letters, digits and dashes are sent."""
    assert await cf.update_seats([SeatUpdate(seat_uid="a" * 35 + "-")]) == []
    assert len(sandbox.patches) == 1


async def test_empty_update_list_is_refused(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """update_seats([]) raises InvalidRequest without a request."""
    with pytest.raises(InvalidRequest, match="no seats"):
        await cf.update_seats([])
    assert sandbox.requests == []


@pytest.mark.parametrize("address", ["", "   ", "a b@example.com", "x" * 250 + "@e.co"])
async def test_bad_email_is_refused_before_sending(
    cf: CloudflareClient, sandbox: Sandbox, address: str
) -> None:
    """An empty, spaced or over-long address raises InvalidRequest without a request."""
    with pytest.raises(InvalidRequest):
        await cf.find_users(email=address)
    assert sandbox.requests == []


@pytest.mark.parametrize("account_id", ["a" * 33, "", "../accounts", "0123-4567"])
async def test_bad_account_id_is_refused_before_sending(sandbox: Sandbox, account_id: str) -> None:
    """An account id over 32 characters (or not alphanumeric) is refused when the client is built."""
    with pytest.raises(ValueError, match="account_id"):
        sandbox_client(sandbox, account_id=account_id)
    assert sandbox.requests == []


# -- each error class ----------------------------------------------------------------------


async def test_wrong_token_is_authentication_failed(sandbox: Sandbox) -> None:
    """HTTP 401 becomes AuthenticationFailed with Cloudflare's code, after one request."""
    sleeps = Sleeps()
    async with sandbox_client(sandbox, auth={"Authorization": "Bearer wrong"}, sleep=sleeps) as client:
        with pytest.raises(AuthenticationFailed) as caught:
            await client.find_users(email="alice@example.com")
    assert caught.value.status == 401
    assert caught.value.errors == (CloudflareMessage(10000, "Authentication error"),)
    assert len(sandbox.requests) == 1 and sleeps.calls == []


async def test_wrong_api_key_is_permission_denied() -> None:
    """HTTP 403 (email + wrong key) becomes PermissionDenied, after one request."""
    sandbox = Sandbox(token=None, email=ADMIN_EMAIL, api_key="right-key")
    sleeps = Sleeps()
    auth = {"X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": "wrong-key"}
    async with sandbox_client(sandbox, auth=auth, sleep=sleeps) as client:
        with pytest.raises(PermissionDenied) as caught:
            await client.update_seats([SeatUpdate(seat_uid="abc")])
    assert caught.value.status == 403 and caught.value.errors[0].code == 9103
    assert len(sandbox.requests) == 1 and sleeps.calls == []


async def test_email_and_key_scheme_works() -> None:
    """The right email + key pair is accepted end to end."""
    sandbox = Sandbox(token=None, email=ADMIN_EMAIL, api_key="right-key")
    async with sandbox_client(
        sandbox, auth={"X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": "right-key"}
    ) as client:
        (alice,) = await client.find_users(email="alice@example.com")
        (seat,) = await client.update_seats([SeatUpdate(seat_uid=alice.seat_uid)])
    assert seat.removed
    assert "authorization" not in sandbox.requests[0].headers


async def test_injected_403_is_permission_denied_and_not_retried(
    cf: CloudflareClient, sandbox: Sandbox
) -> None:
    """An injected 403 is PermissionDenied after exactly one request."""
    sandbox.inject(status=403, times=3, code=10000, message="Insufficient permissions")
    with pytest.raises(PermissionDenied):
        await cf.ping()
    assert len(sandbox.requests) == 1


async def test_wrong_account_is_not_found(sandbox: Sandbox) -> None:
    """HTTP 404 (an unknown 32-character account id) becomes NotFound."""
    async with sandbox_client(sandbox, account_id="f" * 32) as client:
        with pytest.raises(NotFound) as caught:
            await client.find_users(email="alice@example.com")
    assert caught.value.status == 404 and caught.value.errors[0].code == 7003
    assert len(sandbox.requests) == 1


async def test_bad_request_carries_cloudflare_errors(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """HTTP 400 becomes InvalidRequest with Cloudflare's code and message in .errors, not retried."""
    sandbox.inject(status=400, times=2, code=10001, message="Each seat needs seat_uid")
    with pytest.raises(InvalidRequest) as caught:
        await cf.update_seats([SeatUpdate(seat_uid="abc")])
    assert caught.value.status == 400
    assert caught.value.errors == (CloudflareMessage(10001, "Each seat needs seat_uid"),)
    assert "10001" in str(caught.value) and caught.value.describe() == "10001: Each seat needs seat_uid"
    assert len(sandbox.requests) == 1


async def test_two_auth_schemes_are_a_real_400(sandbox: Sandbox) -> None:
    """The sandbox's own 400 (both schemes sent) is InvalidRequest with code 6003."""
    auth = {**TOKEN_AUTH, "X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": "k"}
    async with sandbox_client(sandbox, auth=auth) as client:
        with pytest.raises(InvalidRequest) as caught:
            await client.ping()
    assert caught.value.errors[0].code == 6003


async def test_rate_limited_until_the_deadline(sandbox: Sandbox) -> None:
    """Persistent 429 ends in RateLimited once the next wait would pass the retry deadline."""
    clock = SimpleNamespace(now=0.0, waits=[])

    async def sleep(seconds: float) -> None:
        clock.waits.append(seconds)
        clock.now += seconds

    sandbox.inject(status=429, times=100, retry_after="3", code=10429, message="Rate limited")
    client = sandbox_client(
        sandbox, sleep=sleep, clock=lambda: clock.now, retry_deadline=10, max_attempts=100
    )
    async with client:
        with pytest.raises(RateLimited) as caught:
            await client.ping()
    assert clock.waits == [3, 3, 3]  # a 4th wait would end at t=12 > 10
    assert caught.value.attempts == 4 == len(sandbox.requests)
    assert caught.value.status == 429 and caught.value.errors[0].code == 10429


async def test_rate_limited_gives_up_when_told_to_wait_past_the_deadline(sandbox: Sandbox) -> None:
    """A Retry-After beyond the whole deadline fails at once instead of sleeping for nothing."""
    sleeps = Sleeps()
    sandbox.inject(status=429, times=5, retry_after="300")
    async with sandbox_client(sandbox, sleep=sleeps, retry_deadline=30) as client:
        with pytest.raises(RateLimited):
            await client.ping()
    assert sleeps.calls == [] and len(sandbox.requests) == 1


async def test_persistent_503_is_unavailable_after_n_attempts(sandbox: Sandbox) -> None:
    """A 503 that never clears becomes Unavailable saying how many attempts were made."""
    sandbox.inject(status=503, times=10, code=10503, message="Service unavailable")
    sleeps = Sleeps()
    async with sandbox_client(sandbox, sleep=sleeps, max_attempts=3) as client:
        with pytest.raises(Unavailable, match="unavailable after 3 attempts") as caught:
            await client.update_seats([SeatUpdate(seat_uid="abc")])
    assert caught.value.attempts == 3 == len(sandbox.requests)
    assert len(sleeps.calls) == 2
    assert caught.value.status == 503 and caught.value.errors == (
        CloudflareMessage(10503, "Service unavailable"),
    )


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (httpx.ConnectTimeout("connect timed out"), "timed out"),
        (httpx.ReadTimeout("read timed out"), "timed out"),
        (httpx.ConnectError("connection refused"), "connection failed: ConnectError"),
        (httpx.RemoteProtocolError("server hung up"), "connection failed: RemoteProtocolError"),
    ],
    ids=["connect-timeout", "read-timeout", "connect-error", "protocol-error"],
)
async def test_network_failures_are_unavailable(sandbox: Sandbox, failure: Exception, message: str) -> None:
    """Timeouts and connection errors are retried, then raised as Unavailable."""
    calls: list[httpx.Request] = []

    def fail(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise failure

    sleeps = Sleeps()
    transport = httpx.MockTransport(fail)
    async with sandbox_client(sandbox, transport=transport, sleep=sleeps, max_attempts=4) as client:
        with pytest.raises(Unavailable, match="unavailable after 4 attempts") as caught:
            await client.update_seats([SeatUpdate(seat_uid="abc")])
    assert message in str(caught.value)
    assert len(calls) == 4 and len(sleeps.calls) == 3
    assert caught.value.status is None and caught.value.cf_ray is None


async def test_network_failure_then_success(sandbox: Sandbox) -> None:
    """One connection error followed by a good answer succeeds."""
    inner = sandbox.transport()
    failures = [httpx.ConnectError("refused")]

    class Flaky(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if failures:
                raise failures.pop()
            return await inner.handle_async_request(request)

    async with sandbox_client(sandbox, transport=Flaky()) as client:
        assert len(await client.find_users(email="bob@example.com")) == 1


# -- odd answers ---------------------------------------------------------------------------


async def test_success_false_with_http_200_is_an_error_and_not_retried(
    cf: CloudflareClient, sandbox: Sandbox
) -> None:
    """An HTTP 200 whose envelope says success:false raises once with Cloudflare's code."""
    sandbox.inject(status=200, times=3, code=1234, message="Something odd")
    with pytest.raises(SeatsError) as caught:
        await cf.update_seats([SeatUpdate(seat_uid="abc")])
    assert caught.value.status == 200
    assert caught.value.errors == (CloudflareMessage(1234, "Something odd"),)
    assert len(sandbox.requests) == 1 and len(sandbox.faults) == 2


async def test_empty_errors_list_names_the_http_status(cf: CloudflareClient, sandbox: Sandbox) -> None:
    """A failure envelope without errors gives a message with the HTTP status."""
    sandbox.inject(status=400, empty_errors=True)
    with pytest.raises(InvalidRequest, match="HTTP 400") as caught:
        await cf.ping()
    assert caught.value.errors == ()
    assert "HTTP 400" in caught.value.describe()


async def test_empty_errors_on_5xx_names_the_http_status(sandbox: Sandbox) -> None:
    """A 503 with an empty errors list ends in Unavailable mentioning HTTP 503."""
    sandbox.inject(status=503, times=2, empty_errors=True)
    async with sandbox_client(sandbox, max_attempts=2) as client:
        with pytest.raises(Unavailable, match="HTTP 503"):
            await client.ping()


@pytest.mark.parametrize(
    ("status", "error"), [(502, Unavailable), (403, PermissionDenied), (200, SeatsError)]
)
async def test_html_error_page_names_the_http_status(
    sandbox: Sandbox, status: int, error: type[SeatsError]
) -> None:
    """An HTML page instead of JSON gives a clear error with the HTTP status, keeping the cf-ray."""
    sandbox.inject(status=status, times=2, html=True)
    recorder = RecordingTransport(sandbox.transport())
    async with sandbox_client(sandbox, transport=recorder, max_attempts=2) as client:
        with pytest.raises(error, match=f"HTTP {status}.*not JSON") as caught:
            await client.ping()
    assert caught.value.status == status
    assert caught.value.cf_ray == recorder.exchanges[-1].headers["cf-ray"]


@pytest.mark.parametrize(
    ("inject", "error"),
    [
        ({"status": 400}, InvalidRequest),
        ({"status": 404}, NotFound),
        ({"status": 429, "times": 3}, RateLimited),
        ({"status": 503, "times": 3}, Unavailable),
    ],
    ids=["400", "404", "429", "503"],
)
async def test_errors_keep_the_cf_ray_of_the_last_answer(
    sandbox: Sandbox, inject: dict[str, Any], error: type[SeatsError]
) -> None:
    """The raised error carries the cf-ray of the (last) response, for support tickets."""
    sandbox.inject(**inject)
    recorder = RecordingTransport(sandbox.transport())
    async with sandbox_client(sandbox, transport=recorder, max_attempts=3) as client:
        with pytest.raises(error) as caught:
            await client.ping()
    assert caught.value.cf_ray is not None
    assert caught.value.cf_ray == recorder.exchanges[-1].headers["cf-ray"]


async def test_real_401_keeps_the_cf_ray(sandbox: Sandbox) -> None:
    """The sandbox's own 401 answer's cf-ray ends up on AuthenticationFailed."""
    recorder = RecordingTransport(sandbox.transport())
    async with sandbox_client(sandbox, transport=recorder, auth={"Authorization": "Bearer x"}) as client:
        with pytest.raises(AuthenticationFailed) as caught:
            await client.ping()
    (exchange,) = recorder.exchanges
    assert exchange.headers["cf-ray"] and caught.value.cf_ray == exchange.headers["cf-ray"]


async def test_unreadable_user_record_is_a_clear_error(sandbox: Sandbox) -> None:
    """A wanted record of the wrong shape raises SeatsError; an unrelated odd record is skipped."""
    weird = sandbox.add_user({**demo_user("weird@example.com", "Weird"), "email": ["not", "a", "string"]})
    async with sandbox_client(sandbox) as client:
        assert (await client.find_users_by_seat_uids(["no-such-seat"])).get("no-such-seat") is None
        with pytest.raises(SeatsError, match="AccessUser") as caught:
            (await client.find_users_by_seat_uids([weird["seat_uid"]])).get(weird["seat_uid"])
    assert caught.value.cf_ray is not None


# -- Retry-After and backoff ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry_after": "7"}, 7.0),
        ({"retry_after": "0"}, 0.0),
        ({"retry_after_ms": "1500"}, 1.5),
        ({"retry_after": "9", "retry_after_ms": "250"}, 0.25),  # the precise one wins
        ({"retry_after": "3600"}, 60.0),  # capped
        ({"retry_after_ms": "90000"}, 60.0),
    ],
    ids=["seconds", "zero", "ms", "ms-wins", "capped", "ms-capped"],
)
async def test_retry_after_is_honoured(sandbox: Sandbox, headers: dict[str, Any], expected: float) -> None:
    """A 429 with Retry-After / retry-after-ms waits what Cloudflare asked (at most 60 s), then succeeds."""
    sandbox.inject(status=429, **headers)
    sleeps = Sleeps()
    async with sandbox_client(sandbox, sleep=sleeps, retry_deadline=600) as client:
        (alice,) = await client.find_users(email="alice@example.com")
    assert alice.email == "alice@example.com"
    assert sleeps.calls == [expected]
    assert len(sandbox.requests) == 2


async def test_retry_after_http_date_is_honoured(sandbox: Sandbox) -> None:
    """A Retry-After HTTP date 30 s ahead makes the adapter wait about 30 s."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    sandbox.inject(status=429, retry_after=email.utils.format_datetime(when, usegmt=True))
    sleeps = Sleeps()
    async with sandbox_client(sandbox, sleep=sleeps) as client:
        await client.ping()
    (waited,) = sleeps.calls
    assert 27.0 <= waited <= 30.0


def test_parse_retry_after_http_date() -> None:
    """parse_retry_after turns an HTTP date into seconds from `now`, never negative."""
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    header = httpx.Headers({"Retry-After": "Fri, 27 Nov 2026 12:00:45 GMT"})
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(45.0)
    assert parse_retry_after(header, now=(now + timedelta(minutes=5)).timestamp()) == 0.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "12"}, 12.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "750"}, 0.75),
        ({"retry-after-ms": "junk", "Retry-After": "3"}, 3.0),
        ({"Retry-After": ""}, None),
    ],
)
def test_parse_retry_after_values(headers: dict[str, str], expected: float | None) -> None:
    """Seconds, milliseconds, junk and absence are all read sensibly."""
    assert parse_retry_after(httpx.Headers(headers), now=time.time()) == expected


async def test_exponential_backoff_without_retry_after(sandbox: Sandbox) -> None:
    """Without Retry-After waits grow 0.5, 1, 2, 4 ... (+ up to 0.5 s jitter), capped at 8 s."""
    sandbox.inject(status=503, times=7)
    sleeps = Sleeps()
    async with sandbox_client(sandbox, sleep=sleeps, max_attempts=8) as client:
        await client.ping()
    assert len(sleeps.calls) == 7 and len(sandbox.requests) == 8
    for n, waited in enumerate(sleeps.calls):
        base = 0.5 * 2**n
        assert min(base, 8.0) <= waited <= min(base + 0.5, 8.0), (n, waited)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(sandbox: Sandbox, status: int) -> None:
    """4xx other than 429 fail after exactly one request and no wait."""
    sandbox.inject(status=status, times=3)
    sleeps = Sleeps()
    async with sandbox_client(sandbox, sleep=sleeps) as client:
        with pytest.raises(SeatsError) as caught:
            await client.update_seats([SeatUpdate(seat_uid="abc")])
    assert caught.value.status == status and caught.value.attempts == 1
    assert len(sandbox.requests) == 1 and sleeps.calls == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_then_success(sandbox: Sandbox, status: int) -> None:
    """Two 5xx answers to a PATCH followed by success return the updated seat."""
    bob = user_by_email(sandbox, "bob@example.com")
    sandbox.inject(status=status, times=2, methods=("PATCH",))
    async with sandbox_client(sandbox) as client:
        (seat,) = await client.update_seats([SeatUpdate(seat_uid=bob["seat_uid"])])
    assert seat.removed and len(sandbox.patches) == 3


# -- logs and secrets ----------------------------------------------------------------------

SECRET_TOKEN = "tok-SECRET-6f1d2c9a8b7e"
SECRET_KEY = "key-SECRET-0a9b8c7d6e5f"
WRONG_SECRET = "wrong-SECRET-112233"


async def run_flow(
    sandbox: Sandbox, auth: Mapping[str, str], wrong: Mapping[str, str]
) -> list[BaseException]:
    """Every operation with a retry, then failing calls with wrong credentials; returns the errors."""
    errors: list[BaseException] = []
    sandbox.inject(status=503, times=1, methods=("PATCH",))
    async with sandbox_client(sandbox, auth=auth) as client:
        await client.ping()
        (alice,) = await client.find_users(email="alice@example.com")
        uid = str(alice.seat_uid)
        await client.update_seats([SeatUpdate(seat_uid=uid)])
        assert (await client.find_users_by_seat_uids([uid])).get(uid) is not None
    async with sandbox_client(sandbox, auth=wrong) as client:
        for call in (client.ping(), client.update_seats([SeatUpdate(seat_uid="abc")])):
            with pytest.raises(SeatsError) as caught:
                await call
            errors.append(caught.value)
    sandbox.inject(status=503, times=10)
    async with sandbox_client(sandbox, auth=auth, max_attempts=2) as client:
        with pytest.raises(Unavailable) as caught:
            await client.ping()
        errors.append(caught.value)
    return errors


def extra(record: logging.LogRecord, *names: str) -> tuple[Any, ...]:
    """Fields a log call passed with `extra=` (they are attributes only at run time)."""
    return tuple(vars(record)[name] for name in names)


def rendered(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), repr(error.args), *traceback.format_exception(error)])


@pytest.mark.parametrize(
    ("make_sandbox", "auth", "wrong", "secrets"),
    [
        (
            lambda: Sandbox(token=SECRET_TOKEN),
            {"Authorization": f"Bearer {SECRET_TOKEN}"},
            {"Authorization": f"Bearer {WRONG_SECRET}"},
            [SECRET_TOKEN, WRONG_SECRET],
        ),
        (
            lambda: Sandbox(token=None, email=ADMIN_EMAIL, api_key=SECRET_KEY),
            {"X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": SECRET_KEY},
            {"X-Auth-Email": ADMIN_EMAIL, "X-Auth-Key": WRONG_SECRET},
            [SECRET_KEY, WRONG_SECRET],
        ),
    ],
    ids=["token", "email+key"],
)
async def test_credentials_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture,
    make_sandbox: Callable[[], Sandbox],
    auth: Mapping[str, str],
    wrong: Mapping[str, str],
    secrets: list[str],
) -> None:
    """A full flow (successes, retries, failures) logs and raises without any credential value."""
    caplog.set_level(logging.DEBUG)
    errors = await run_flow(make_sandbox(), auth, wrong)
    assert caplog.records and len(errors) == 3
    everything = "\n".join(
        [caplog.text, *(repr(vars(r)) for r in caplog.records), *(rendered(e) for e in errors)]
    )
    for secret in secrets:
        assert secret not in everything


async def test_each_attempt_is_logged_with_its_details(
    caplog: pytest.LogCaptureFixture, sandbox: Sandbox
) -> None:
    """Each HTTP attempt logs method, path, status, attempt number, cf-ray and duration at INFO."""
    caplog.set_level(logging.INFO, logger="seatbot.cloudflare")
    bob = user_by_email(sandbox, "bob@example.com")
    sandbox.inject(status=503, times=1, methods=("PATCH",))
    recorder = RecordingTransport(sandbox.transport())
    async with sandbox_client(sandbox, transport=recorder) as client:
        (seat,) = await client.update_seats([SeatUpdate(seat_uid=bob["seat_uid"])])
    records = [r for r in caplog.records if r.name == "seatbot.cloudflare"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    fields = [extra(r, "http_method", "path", "status", "attempt", "cf_ray") for r in records]
    path = f"/accounts/{DEMO_ACCOUNT_ID}/access/seats"
    assert fields == [
        ("PATCH", path, 503, 1, recorder.exchanges[0].headers["cf-ray"]),
        ("PATCH", path, 200, 2, seat.cf_ray),
    ]
    assert all(isinstance(extra(r, "duration_ms")[0], float) for r in records)
    assert "PATCH" in records[0].getMessage() and "503" in records[0].getMessage()


async def test_network_failure_is_logged_without_status(
    caplog: pytest.LogCaptureFixture, sandbox: Sandbox
) -> None:
    """An attempt that got no answer is still logged, with status None."""
    caplog.set_level(logging.INFO, logger="seatbot.cloudflare")

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with sandbox_client(sandbox, transport=httpx.MockTransport(fail), max_attempts=2) as client:
        with pytest.raises(Unavailable):
            await client.ping()
    records = [r for r in caplog.records if r.name == "seatbot.cloudflare"]
    assert [extra(r, "status", "attempt", "cf_ray") for r in records] == [(None, 1, None), (None, 2, None)]


# -- from_settings -------------------------------------------------------------------------


@pytest.fixture
async def settings_client(isolated_env: None, sandbox: Sandbox) -> AsyncIterator[CloudflareClient]:
    settings = load_settings(
        _env_file=None,
        cloudflare_account_id=DEMO_ACCOUNT_ID,
        cloudflare_api_token=DEMO_TOKEN,
        cloudflare_base_url=sandbox.base_url,
        cloudflare_chunk_size=2,
        cloudflare_max_pages=1,
    )
    async with CloudflareClient.from_settings(
        settings, transport=sandbox.transport(), sleep=no_sleep
    ) as client:
        yield client


async def test_from_settings_uses_the_configured_values(
    settings_client: CloudflareClient, sandbox: Sandbox
) -> None:
    """from_settings wires account, token, base URL, chunk size and max pages from Settings."""
    uids = [u["seat_uid"] for u in list(sandbox.users.values())[:3]]
    seats = await settings_client.update_seats([SeatUpdate(seat_uid=uid) for uid in uids])
    assert [s.seat_uid for s in seats] == uids
    assert [len(p.body) for p in sandbox.patches] == [2, 1]
    assert sandbox.patches[0].headers["authorization"] == f"Bearer {DEMO_TOKEN}"
    assert settings_client.max_pages == 1


def test_from_settings_requires_an_account_id(isolated_env: None) -> None:
    """Without CLOUDFLARE_ACCOUNT_ID from_settings stops with a ConfigError naming it."""
    settings = load_settings(_env_file=None, cloudflare_api_token=DEMO_TOKEN)
    with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID"):
        CloudflareClient.from_settings(settings)
