"""/metrics, /healthz and /readyz of the web app: real traffic through the signed Slack path, real Redis.

Counters live for the whole test session (one registry per process), so each test compares a scrape
taken before its traffic with one taken after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN, DEMO_USERS, demo_user
from bot.devtools.sandbox import Sandbox
from bot.metrics import endpoint, verb_of
from bot.ops.probes import Probes
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ALICE,
    CHANNEL,
    OUTSIDER,
    SlackClient,
    all_text,
    build,
    button,
    card_for,
    confirm,
    running,
)
from tests.support.servers import RedisServer

TOKEN = "metrics-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def value(text: str, name: str, **labels: str) -> float:
    """One sample of a scrape (0 when absent); labels not named are summed over."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
async def watched(slack: FakeSlack, sandbox: Sandbox, redis_url: str) -> AsyncIterator[SlackClient]:
    async with running(slack, sandbox, redis_url, seatbot_metrics_token=TOKEN) as bot:
        yield bot


async def scrape(bot: SlackClient) -> str:
    response = await bot.http.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_are_off_without_a_token(bot: SlackClient) -> None:
    """No SEATBOT_METRICS_TOKEN: there is no /metrics at all."""
    assert (await bot.http.get("/metrics")).status_code == 404
    assert (await bot.http.get("/metrics", headers=AUTH)).status_code == 404


async def test_metrics_need_the_token(watched: SlackClient) -> None:
    """With a token: 401 without it or with another one, 200 with it."""
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = await watched.http.get("/metrics", headers=headers)
        assert refused.status_code == 401 and "seatbot_" not in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "seatbot_redis_up 1.0" in await scrape(watched)


async def test_traffic_moves_the_metrics_and_leaks_no_person(
    watched: SlackClient, slack: FakeSlack, sandbox: Sandbox
) -> None:
    """Commands, clicks, Cloudflare calls, seats, budget and delivery failures count; no email, Slack ID,
    seat UID, account ID or token appears in a scrape taken after traffic full of them."""
    alice = demo_user(ALICE, "Alice Example")
    seat_uid, user_id = str(alice["seat_uid"]), str(alice["id"])
    mallory = str(demo_user(*DEMO_USERS[1])["seat_uid"])
    before = await scrape(watched)

    card = await card_for(watched, f"revoke {ALICE} --reason offboarding")
    posts = await confirm(watched, card, 2)
    assert "access ✗ / gateway ✗" in all_text(posts)
    await card_for(watched, f"status {seat_uid}")
    await card_for(watched, f"frobnicate {ALICE}")  # unknown verb: typed text must not become a label
    await card_for(watched, f"revoke {ALICE}", user=OUTSIDER)  # refused
    other = await card_for(watched, f"revoke {mallory}")
    forged = await watched.post("x=1", headers={"X-Slack-Signature": "v0=0"})
    assert forged.status_code == 401
    slack.reject_responses = True  # Slack's response_url refuses the cancel's answer
    response, _ = await watched.click("seat_cancel", button(other, "seat_cancel")["value"])
    assert response.status_code == 200
    deadline = time.monotonic() + 5  # the click is answered after its ack: wait for its count
    while value(after := await scrape(watched), "seatbot_clicks_total", action="cancel") == value(
        before, "seatbot_clicks_total", action="cancel"
    ):
        assert time.monotonic() < deadline, "the cancel click was never counted"
        await asyncio.sleep(0.02)
    after = await scrape(watched)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("seatbot_commands_total", verb="revoke", result="card") == 2
    assert moved("seatbot_commands_total", verb="revoke", result="refused") == 1
    assert moved("seatbot_commands_total", verb="status", result="ok") == 1
    assert moved("seatbot_commands_total", verb="unknown", result="error") == 1
    assert moved("seatbot_clicks_total", action="confirm", result="done") == 1
    assert moved("seatbot_clicks_total", action="cancel", result="cancelled") == 1
    seats = "/accounts/{account_id}/access/seats"
    assert moved("seatbot_cloudflare_requests_total", method="PATCH", endpoint=seats, status="200") == 1
    users = "/accounts/{account_id}/access/users"
    assert moved("seatbot_cloudflare_requests_total", method="GET", endpoint=users, status="200") >= 2
    assert moved("seatbot_cloudflare_request_duration_seconds_count", method="PATCH", endpoint=seats) == 1
    assert moved("seatbot_seats_changed_total", lane="interactive") == 1
    assert moved("seatbot_rate_budget_taken_total", lane="interactive") >= 2
    # the status by seat UID scans (the directory is still empty): on the background share
    assert moved("seatbot_rate_budget_taken_total", lane="bulk") >= 1
    assert moved("seatbot_slack_delivery_failures_total", via="response_url") >= 1
    assert moved("seatbot_slack_ack_seconds_count", status="200") == 7  # 5 commands, 2 clicks
    assert moved("seatbot_slack_ack_seconds_count", status="401") == 1
    assert moved("seatbot_slack_ack_seconds_bucket", status="200", le="3.0") == 7
    assert value(after, "seatbot_build_info") == 1
    assert value(after, "seatbot_rate_budget_used", lane="interactive") >= 2
    limit = value(after, "seatbot_rate_budget_limit")
    used = value(after, "seatbot_rate_budget_used")
    assert value(after, "seatbot_rate_budget_remaining", lane="interactive") == limit - used
    assert value(after, "seatbot_directory_state", state="empty") == 1
    assert {"seatbot_directory_users", "seatbot_job_runners", "seatbot_jobs_overdue_seconds"} <= names(after)

    for secret in (ALICE, "example.com", seat_uid, mallory, user_id, DEMO_ACCOUNT_ID, DEMO_TOKEN, TOKEN):
        assert secret not in after
    for who in (ADMIN, OUTSIDER, CHANNEL, "offboarding", "frobnicate"):
        assert who not in after
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", after)  # no UUID of any kind
    assert "@" not in after


async def test_overdue_jobs_show_when_no_runner_runs(watched: SlackClient) -> None:
    """A job due 30 s ago that no runner picked up: the overdue gauge says so; no runner is alive."""
    runtime = watched.app.state.runtime
    assert runtime.jobs is not None and not runtime.jobs.running  # tests drive the app without lifespan
    await runtime.jobs.enqueue_at("directory_refresh", key="metrics-overdue", at=time.time() - 30)
    try:
        text = await scrape(watched)
        assert 29 <= value(text, "seatbot_jobs_overdue_seconds") < 120
        assert value(text, "seatbot_job_runners") == 0
    finally:
        await runtime.jobs.cancel("metrics-overdue")


async def test_job_runs_count_with_their_lag_and_failures(watched: SlackClient) -> None:
    """A job started 2 s past its due time adds ≥ 2 s of lag; one that raises counts as failed."""
    runtime = watched.app.state.runtime
    assert runtime.jobs is not None
    ran = {"metrics_ok": asyncio.Event(), "metrics_fail": asyncio.Event()}

    async def ok() -> None:
        ran["metrics_ok"].set()

    async def fail() -> None:
        ran["metrics_fail"].set()
        raise RuntimeError("this job fails on purpose")

    runtime.jobs.register("metrics_ok", ok)
    runtime.jobs.register("metrics_fail", fail)
    before = await scrape(watched)
    await runtime.jobs.enqueue_at("metrics_ok", key="metrics-ok", at=time.time() - 2)
    await runtime.jobs.enqueue_at("metrics_fail", key="metrics-fail", at=time.time(), retries=1)
    await runtime.start_jobs()
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ran.values())), 10)
    after = await scrape(watched)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("seatbot_jobs_total", job="metrics_ok", result="ok") == 1
    assert moved("seatbot_jobs_total", job="metrics_fail", result="failed") == 1
    assert moved("seatbot_job_lag_seconds_count", job="metrics_ok") == 1
    assert 2 <= moved("seatbot_job_lag_seconds_sum", job="metrics_ok") < 60
    assert value(after, "seatbot_job_runners") >= 1


def test_endpoints_are_templated_and_verbs_are_a_closed_set() -> None:
    """Whatever the path or the typed verb, the label is a template or a known word."""
    uid = "0b7e1b7c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
    assert endpoint(f"accounts/{DEMO_ACCOUNT_ID}/access/users?email=a%40b.c") == (
        "/accounts/{account_id}/access/users"
    )
    assert endpoint(f"accounts/{DEMO_ACCOUNT_ID}/access/users/{uid}/last_seen_identity") == (
        "/accounts/{account_id}/access/users/{user_id}/{id}"
    )
    assert endpoint(f"/accounts/x/{uid}/seats") == "/accounts/{account_id}/{id}/seats"
    assert [verb_of(t) for t in ("REVOKE a@b.c", "--help", "", "alice@example.com")] == [
        "revoke",
        "help",
        "none",
        "unknown",
    ]


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def test_readyz_follows_redis_stopped_and_paused(
    slack: FakeSlack, sandbox: Sandbox, private_redis: RedisServer
) -> None:
    """A real redis-server: stopped → /readyz 503 at once; paused (SIGSTOP) → 503 within 3 s while
    /healthz still answers 200 within a second; back → both 200."""
    bot = build(slack, sandbox, private_redis.url)
    try:
        assert (await bot.http.get("/readyz")).status_code == 200
        private_redis.stop()
        assert (await bot.http.get("/readyz")).status_code == 503
        assert (await bot.http.get("/healthz")).status_code == 200
        private_redis.start()
        assert (await bot.http.get("/readyz")).status_code == 200

        assert private_redis.proc is not None
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.perf_counter()
            ready = await bot.http.get("/readyz")
            assert ready.status_code == 503 and time.perf_counter() - started < 3
            started = time.perf_counter()
            alive = await bot.http.get("/healthz")
            assert alive.status_code == 200 and time.perf_counter() - started < 1
            assert alive.json()["redis"] == "no answer in time"
        finally:
            os.kill(private_redis.proc.pid, signal.SIGCONT)
        assert (await bot.http.get("/readyz")).status_code == 200
    finally:
        await bot.aclose()


async def test_a_jobs_process_whose_runner_died_is_not_alive(watched: SlackClient) -> None:
    """role=jobs: starting and running are alive; a runner task that ended on its own is 503."""
    runtime = watched.app.state.runtime
    probes = Probes(runtime, role="jobs")
    starting = await probes.live()
    assert starting.status == 200 and starting.body["job_runner"] == "starting"
    await runtime.start_jobs()
    alive = await probes.live()
    assert alive.status == 200 and alive.body["job_runner"] == "running"
    task = runtime.jobs._task  # the saq worker's task, ended as a crash would end it
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    dead = await probes.live()
    assert dead.status == 503 and dead.body == {**dead.body, "ok": False, "job_runner": "stopped"}
