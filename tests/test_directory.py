"""The seat directory: real Redis, the real web app (one or two instances), the sandbox with many users."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio as aredis

from bot.app.directory_sync import DirectorySync
from bot.cloudflare.budget import RateBudget
from bot.cloudflare.client import CloudflareClient
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN, demo_user
from bot.devtools.sandbox import Sandbox
from bot.devtools.synthetic import synthetic_uid
from bot.slack.web import build_app
from bot.state.directory import SeatDirectory
from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    ADMIN,
    ALICE,
    OUTSIDER,
    SlackClient,
    all_text,
    card_for,
    command_body,
    running,
    settings_for,
    sign,
    stack_env,
)
from tests.support.servers import clean_env, free_port, no_sleep, wait_http

NOBODY = "no Zero Trust user holds this seat UID"
AT_SYNC = "no Zero Trust user held this seat UID at the last sync"
INCOMPLETE = "look-up could not be completed"


def sync_of(bot: SlackClient) -> DirectorySync:
    sync: DirectorySync = bot.app.state.runtime.directory_sync
    return sync


def uid_of(sandbox: Sandbox, email: str) -> str:
    return str(next(u for u in sandbox.users.values() if u["email"] == email)["seat_uid"])


async def status_text(bot: SlackClient, sandbox: Sandbox, text: str) -> tuple[str, int]:
    """`/seat <text>`: what the person reads, and how many Cloudflare requests it took."""
    before = len(sandbox.requests)
    message = await card_for(bot, text)
    return all_text(message), len(sandbox.requests) - before


async def test_uid_lookup_with_a_ready_directory_costs_two_requests_at_any_size(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """12,000 users: the last-listed seat is found with 2 requests, confirmed, and the card says how old."""
    sandbox.synthetic.resize(12_000)
    result = await sync_of(bot).run_once()
    assert result is not None and result.users == 12_005 and result.pages == 121 and result.requests == 121
    text, requests = await status_text(bot, sandbox, f"status {synthetic_uid(12_000)}")
    assert "user012000@synthetic.example.com" in text and requests <= 2
    assert "seat directory (synced" in text and "confirmed with Cloudflare" in text
    health = (await bot.http.get("/healthz")).json()["directory"]
    assert health["state"] == "ready" and health["users"] == 12_005 and health["synced_at"].startswith("20")


async def test_unknown_uids_are_answered_from_a_ready_directory_without_a_scan(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """6,000 users: 25 mistyped UIDs cost no Cloudflare request (a scan each once cost up to 50); each
    says it was held by nobody at the last sync and how to refresh; a known UID still costs ≤ 2."""
    sandbox.synthetic.resize(6_000)
    assert await sync_of(bot).run_once() is not None
    typos = [f"{n:08x}-dead-beef-0000-{n:012x}" for n in range(25)]
    text, requests = await status_text(bot, sandbox, "status " + " ".join(typos))
    assert requests == 0 and INCOMPLETE not in text
    assert all(f"{uid}: {AT_SYNC} (0 s ago)" in text for uid in typos) and "run `/seat sync`" in text
    text, requests = await status_text(bot, sandbox, f"status {synthetic_uid(6_000)} {typos[0]}")
    assert "user006000@synthetic.example.com" in text and f"{typos[0]}: {AT_SYNC}" in text and requests <= 2


async def test_without_a_directory_big_accounts_say_incomplete_never_nobody(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Off or empty, past the page cap: "could not be completed (why)", never "no user holds this seat"."""
    sandbox.synthetic.resize(6_000)
    for overrides in ({"seatbot_directory_refresh_seconds": 0}, {}):
        async with running(slack, sandbox, redis_url, **overrides) as bot:
            health = (await bot.http.get("/healthz")).json()
            assert health["directory"]["state"] == ("off" if overrides else "empty")
            text, requests = await status_text(bot, sandbox, f"status {synthetic_uid(6_000)} dave9")
            assert f"{synthetic_uid(6_000)}: {INCOMPLETE}" in text and f"dave9: {INCOMPLETE}" in text
            assert NOBODY not in text and requests == 50
            assert ("directory is off" if overrides else "still being built") in text


async def test_empty_directory_small_account_scans_correctly(bot: SlackClient, sandbox: Sandbox) -> None:
    """Before the first sync a small account is scanned completely: found, or truly nobody."""
    assert (await bot.http.get("/healthz")).json()["directory"]["state"] == "empty"
    text, _ = await status_text(bot, sandbox, f"status {uid_of(sandbox, ALICE)} dave9")
    assert ALICE in text and f"dave9: {NOBODY}" in text and "seat directory" not in text


async def test_users_added_removed_and_reassigned_between_syncs(bot: SlackClient, sandbox: Sandbox) -> None:
    """The confirmation step catches every change since the sync; nothing is ever sent to a wrong seat."""
    bob_uid = uid_of(sandbox, "bob@example.com")
    alice_uid = uid_of(sandbox, ALICE)
    assert await sync_of(bot).run_once() is not None
    new = sandbox.add_user(demo_user("erin@example.com", "Erin New"))  # added after the sync
    sandbox.remove_user(alice_uid)  # left
    sandbox.remove_user(bob_uid)  # bob re-created: his email now holds another seat
    bob2 = sandbox.add_user(
        {**demo_user("bob@example.com", "Bob Again"), "seat_uid": "0b0b0b0b-2222-4222-8222-222222222222"}
    )

    text, requests = await status_text(bot, sandbox, f"status {new['seat_uid']}")
    # not in the directory: answered from it, no scan, and how to bring the new seat in
    assert f"{new['seat_uid']}: {AT_SYNC}" in text and "run `/seat sync`" in text and requests == 0
    message = await card_for(bot, f"revoke {alice_uid} {bob_uid} {bob2['seat_uid']}")
    text = all_text(message)
    for gone in (alice_uid, bob_uid):  # one look-up of the recorded email each, no scan
        assert f"{gone}: " in text and "at the last sync" in text and "no longer does" in text
    assert (
        "Revoke 1 Zero Trust seat?" in text
        and "0b0b0b0b-2222-4222-8222-222222222222" in text
        and "Bob Again" in text
    )
    assert sandbox.patches == []
    assert "Directory synced" in all_text(await card_for(bot, "sync"))
    text, _ = await status_text(bot, sandbox, f"status {new['seat_uid']}")
    assert "erin@example.com" in text  # after `/seat sync` the new seat is known
    # stale records are dropped, fresh answers written through: the next look-up is direct
    directory = SeatDirectory(bot.app.state.runtime.redis)
    snapshot = await directory.lookup(
        [alice_uid, "0b0b0b0b-2222-4222-8222-222222222222", str(new["seat_uid"])]
    )
    assert snapshot.emails == {
        alice_uid: None,
        "0b0b0b0b-2222-4222-8222-222222222222": "bob@example.com",
        str(new["seat_uid"]): "erin@example.com",
    }


async def test_seat_sync_command_admins_only_with_result(bot: SlackClient, sandbox: Sandbox) -> None:
    """`/seat sync`: refused to non-admins; an admin gets the sync's figures, then the age on status."""
    refused = await card_for(bot, "sync", user=OUTSIDER)
    assert "Only seat-bot admins" in all_text(refused)
    sandbox.synthetic.resize(250)
    done = all_text(await card_for(bot, "sync"))
    assert "Directory synced: 255 users, 3 pages, 3 Cloudflare requests" in done
    status = all_text(await card_for(bot, "sync"))  # again: a fresh sync, same figures
    assert "Directory synced: 255 users" in status


async def test_two_processes_one_sync_and_lookups_see_one_sync_only(
    slack: FakeSlack, sandbox: Sandbox, redis_url: str, redis_client: aredis.Redis
) -> None:
    """Two app instances on one Redis: one syncs, the other says it is running; look-ups never mix."""
    sandbox.synthetic.resize(3_000)
    async with running(slack, sandbox, redis_url) as a, running(slack, sandbox, redis_url) as b:
        assert await sync_of(a).run_once() is not None
        first = await SeatDirectory(redis_client).status()
        sandbox.remove_user(synthetic_uid(10))
        # page 1 is listed and written, the rest wait: "mid-sync" holds however slow the machine is
        sandbox.hold, sandbox.hold_from = asyncio.Event(), len(sandbox.requests) + 1
        assert await sync_of(a).maybe_refresh(force=True) == "started"
        for _ in range(200):
            if int((await redis_client.hget("{seatbot}:dir:progress", "pages")) or 0) >= 1:
                break
            await asyncio.sleep(0.02)
        assert await sync_of(b).maybe_refresh(force=True) == "running"
        assert await sync_of(b).run_once() is None
        assert "already running" in all_text(await card_for(b, "sync"))
        health = (await b.http.get("/healthz")).json()
        assert health["ok"] is True and health["directory"]["state"] == "syncing"
        # mid-sync, the directory is still wholly the first sync's
        mid = await SeatDirectory(redis_client).lookup([synthetic_uid(10)])
        assert mid.synced_at == first.synced_at and mid.emails[synthetic_uid(10)] is not None
        task = sync_of(a).task
        assert task is not None and not task.done()
        sandbox.hold.set()
        result = await task
        assert result is not None and result.users == 3_004
        after = await SeatDirectory(redis_client).lookup([synthetic_uid(10)])
        assert after.emails[synthetic_uid(10)] is None and after.synced_at != first.synced_at


async def test_a_killed_syncer_leaves_the_last_directory_and_another_takes_over(
    tmp_path: Path, slack: FakeSlack, redis_url: str, redis_client: aredis.Redis
) -> None:
    """`python -m bot serve` killed (SIGKILL) mid-sync: the last complete directory stays in place, and
    once its lease expires another process syncs."""
    cf_port, bot_port = free_port(), free_port()
    knobs = f"http://127.0.0.1:{cf_port}/_sandbox"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bot",
                "sandbox",
                "--port",
                str(cf_port),
                "--users",
                "1000",
                "--idle-users",
                "0",
            ],
            cwd=tmp_path,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    env = stack_env(
        slack_api_url=slack.api_url,
        redis_url=redis_url,
        cf_port=cf_port,
        PORT=str(bot_port),
        SEATBOT_DIRECTORY_LEASE_SECONDS="1",
        SEATBOT_DIRECTORY_CONCURRENCY="1",
    )
    try:
        wait_http(knobs, proc=procs[0])
        a = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=tmp_path,
            env=clean_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(a)
        health = f"http://127.0.0.1:{bot_port}/healthz"
        wait_http(health, proc=a)
        http = httpx.AsyncClient(timeout=10)  # async: the fake Slack shares this event loop
        for _ in range(100):  # the first sync starts by itself, without holding up /healthz
            if (await http.get(health)).json()["directory"]["state"] == "ready":
                break
            await asyncio.sleep(0.1)
        first = await SeatDirectory(redis_client).status()
        assert first.users == 1_005
        await http.put(knobs, json={"latency": 0.1, "synthetic": 1_500})
        body = command_body("sync", user=ADMIN, channel="C0OPS", response_url=slack.response_url("k"))
        sent = await http.post(f"http://127.0.0.1:{bot_port}/slack/events", content=body, headers=sign(body))
        assert sent.status_code == 200
        for _ in range(100):
            if int((await redis_client.hget("{seatbot}:dir:progress", "pages")) or 0) >= 1:
                break
            await asyncio.sleep(0.05)
        a.kill()  # no clean-up of any kind: the lease stays until it expires
        a.wait(timeout=10)
        await http.put(knobs, json={"latency": 0})
        await http.aclose()
        assert await redis_client.exists("{seatbot}:dir:lease")
        assert (await SeatDirectory(redis_client).status()).users == 1_005
        settings = settings_for(
            slack,
            Sandbox(),
            redis_url,
            cloudflare_base_url=f"http://127.0.0.1:{cf_port}/client/v4",
            seatbot_directory_lease_seconds=1,
        )
        b = SlackClient(build_app(settings), slack)
        try:
            assert await sync_of(b).maybe_refresh(force=True) == "running"
            for _ in range(40):
                await asyncio.sleep(0.1)
                if await sync_of(b).maybe_refresh(force=True) == "started":
                    break
            task = sync_of(b).task
            assert task is not None and (await task) is not None
        finally:
            await b.aclose()
        status = await SeatDirectory(redis_client).status()
        assert status.users == 1_505 and status.state == "ready"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


async def test_the_sync_keeps_to_its_share_and_people_keep_theirs(redis_client: aredis.Redis) -> None:
    """A sync of 30 pages against a Cloudflare enforcing 20 per minute: no 429, at most its half of the
    window, and an interactive request during it never waits."""

    class Clock:
        now = 5_000_000.0

        def __call__(self) -> float:
            return self.now

        async def sleep(self, seconds: float) -> None:
            self.now += seconds
            await asyncio.sleep(0)

    clock = Clock()
    box = Sandbox(synthetic=2_995, rate_limit=20, rate_window=60, rate_clock=clock)
    budget = RateBudget(redis_client, limit=20, window=60, share=0.5, clock=clock, sleep=clock.sleep)
    async with CloudflareClient(
        account_id=DEMO_ACCOUNT_ID,
        auth_headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        base_url=box.base_url,
        transport=box.transport(),
        sleep=no_sleep,
        budget=budget,
    ) as cf:
        sync = DirectorySync(directory=SeatDirectory(redis_client), seats=cf, lease_seconds=600)
        running_sync = asyncio.create_task(sync.run_once())
        while len(box.requests) < 10:
            await asyncio.sleep(0)
        assert await budget.take("interactive", max_wait=0) == 0  # the sync is at its cap; people are not
        result = await running_sync
    assert result is not None and result.users == 3_000 and result.requests == 30
    assert box.rejected == 0 and box.rate_peak <= 11


async def test_a_sync_that_lost_its_lease_cannot_swap_in(redis_client: aredis.Redis) -> None:
    """A stalled syncer whose lease expired and was taken over: its swap is refused, nothing changes."""
    directory = SeatDirectory(redis_client)
    assert await directory.acquire_lease("a" * 32, ttl=0.05)
    await directory.add("a" * 32, [("seat-a", "a@example.com")], ttl=60)
    await asyncio.sleep(0.1)  # A's lease expires; B takes over
    assert await directory.acquire_lease("b" * 32, ttl=60)
    assert not await directory.renew_lease("a" * 32, ttl=60)
    assert not await directory.swap("a" * 32, users=1, synced_at=1.0)
    assert (await directory.lookup(["seat-a"])).emails == {"seat-a": None}
    await directory.add("b" * 32, [("seat-b", "b@example.com")], ttl=60)
    assert await directory.swap("b" * 32, users=1, synced_at=2.0)
    snapshot = await directory.lookup(["seat-a", "seat-b"])
    assert snapshot.emails == {"seat-a": None, "seat-b": "b@example.com"} and snapshot.synced_at == 2.0
    assert await directory.uids_for(["B@Example.com"]) == {"B@Example.com": "seat-b"}


async def test_a_failed_sync_keeps_the_directory_says_why_and_backs_off(
    bot: SlackClient, sandbox: Sandbox
) -> None:
    """Cloudflare refuses page 3: the previous directory stays, `/seat sync` says why, and the periodic
    check waits before it tries again (a failing sync must not eat the budget every minute)."""
    sandbox.synthetic.resize(400)
    sync = sync_of(bot)
    assert await sync.run_once() is not None
    sandbox.synthetic.resize(450)
    sandbox.inject(status=403, code=10000, message="listing denied", methods=("GET",), skip=2)
    text = all_text(await card_for(bot, "sync"))
    assert "Directory sync failed" in text and "listing denied" in text and "405 users" in text
    health = (await bot.http.get("/healthz")).json()["directory"]
    assert health["state"] == "ready" and health["users"] == 405
    now = time.time()
    for later, due in ((0.0, False), (301.0, True)):  # overdue (refresh 1 s), but the failure is recent
        check = DirectorySync(
            directory=sync.directory,
            seats=sync.seats,
            refresh_seconds=1,
            clock=functools.partial(sum, (now, later)),
        )
        assert await check.due() is due
