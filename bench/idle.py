"""`make bench ONLY=idle`: `/seat idle` and a 5,000-seat sweep on real processes, sandbox at 100 ms.

Starts a private redis-server, a sandbox Cloudflare seeded with idle users (its own process), the fake
Slack (its own process) and the bot (`python -m bot serve`). Measures the time from the signed
command to the report, the Cloudflare requests it cost, a 5,000-seat sweep (requests, time, requests
in the busiest 5 minutes) and the bot's RSS; writes the "idle" section of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report
from bench.run import rss_kb
from bench.stack import RemoteSlack, fake_slack, serve, start, stop, wait_up
from bot.devtools.demo_account import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support.harness import action_body, command_body, sign
from tests.support.servers import RedisServer, clean_env, free_port

ADMIN = "UBENCH1"
LATENCY = 0.1
SWEEP = 5_000
CF_LIMIT_PER_5MIN = 1200
FACTS_BYTES = 0  # Redis memory of the directory's facts hash, from the last warm run


def serve_sandbox(port: int, latency: float, idle: int, active: int) -> None:
    """The sandbox on a port: `idle` idle users listed first, then `active` synthetic users of which
    one in ten has not signed in for 60 days (the account sizes of the warm-directory rows)."""
    import uvicorn

    from bot.devtools.demo_idle import idle_users
    from bot.devtools.sandbox import Sandbox
    from bot.devtools.synthetic import synthetic_uid

    box = Sandbox(users=[], latency=latency, synthetic=active)
    for user in idle_users(idle):
        box.add_user(user)
    long_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60 * 86_400))
    for index in range(10, active + 1, 10):
        box.synthetic.update(synthetic_uid(index), last_successful_login=long_ago)
    uvicorn.run(box.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def sandbox_counts(knobs: str) -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        return dict((await http.get(knobs)).json()["requests"])


async def one_round_trip(base: str) -> float:
    """The floor of one Cloudflare request: a bare GET of one user through the same sandbox."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {DEMO_TOKEN}"}) as http:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            await http.get(f"{base}/accounts/{DEMO_ACCOUNT_ID}/access/users", params={"per_page": 1})
            times.append(time.perf_counter() - t0)
    return min(times)


async def command(base: str, slack: RemoteSlack, text: str, key: str) -> tuple[float, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        body = command_body(text, user=ADMIN, channel="CBENCH", response_url=slack.response_url(key))
        t0 = time.perf_counter()
        await http.post("/slack/events", content=body, headers=sign(body))
        found = await slack.wait(key, lambda found: len(found) >= 1, timeout=300)
        took = time.perf_counter() - t0
        await asyncio.sleep(0.5)  # anything after the reply (a refused CSV, an error) is a failure
        extra = await slack.responses(key)
        if len(extra) > 1:
            raise SystemExit(f"unexpected extra replies: {[r.get('text') for r in extra]}")
        return took, found[0]


async def click(base: str, slack: RemoteSlack, value: str, key: str) -> tuple[float, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        body = action_body(
            "seat_confirm", value, user=ADMIN, channel="CBENCH", response_url=slack.response_url(key)
        )
        t0 = time.perf_counter()
        await http.post("/slack/events", content=body, headers=sign(body))
        found = await slack.wait(
            key, lambda found: any(r.get("response_type") == "in_channel" for r in found), timeout=600
        )
        return time.perf_counter() - t0, found


def confirm_value(message: dict[str, Any]) -> str:
    for block in message["blocks"]:
        if block["type"] == "actions":
            return str(block["elements"][0]["value"])
    raise SystemExit(f"no button in {message.get('text')!r}")


class Stack:
    """redis-server, fake Slack, a sandbox and the bot, as separate processes; closed together."""

    def __init__(self) -> None:
        self.server = RedisServer()
        self.procs: list[Any] = []

    async def up(self, *, idle: int, active: int, **env: str) -> tuple[str, str, RemoteSlack, Any]:
        self.server.start()
        cf_port = free_port()
        py = sys.executable
        base_env = clean_env(PYTHONPATH=str(ROOT))
        slack = fake_slack(self.procs)
        cmd = [py, "-m", "bench.idle", "sandbox", str(cf_port), str(LATENCY), str(idle), str(active)]
        self.procs.append(start(cmd, base_env))
        knobs = f"http://127.0.0.1:{cf_port}/_sandbox"
        wait_up(knobs, self.procs[-1], timeout=120)
        bot = serve(
            slack=slack,
            redis_url=self.server.url,
            cf_port=cf_port,
            admin=ADMIN,
            SEATBOT_COMMAND_DEADLINE_SECONDS="600",
            **env,
        )
        self.procs.append(bot.proc)
        return bot.url, knobs, slack, bot.proc

    def down(self) -> None:
        stop(self.procs)
        self.procs.clear()
        self.server.stop()


async def wait_synced(base: str, users: int, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient() as http:
        while time.perf_counter() < deadline:
            state = (await http.get(f"{base}/healthz")).json().get("directory", {})
            if state.get("state") == "ready" and state.get("users") == users:
                return
            await asyncio.sleep(0.5)
    raise SystemExit(f"the directory did not sync {users} users")


async def floor_read(url: str) -> float:
    """The floor of a warm report: reading every fact from Redis, as the bot does, without the rule."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url)
    global FACTS_BYTES
    FACTS_BYTES = int(await client.memory_usage("{seatbot}:dir:facts", samples=0) or 0)
    t0 = time.perf_counter()
    cursor = 0
    while True:
        cursor, _ = await client.hscan("{seatbot}:dir:facts", cursor, count=5_000)
        if cursor == 0:
            break
    took = time.perf_counter() - t0
    await client.aclose()
    return took


async def warm(size: int, rows: list[tuple[str, str, str]]) -> None:
    """`/seat idle` on a warm directory of `size` users (one in ten idle): 3 runs, median."""
    stack = Stack()
    try:
        # the sandbox does not enforce a limit here: the directory's own bench measures sync costs
        base, knobs, slack, bot = await stack.up(
            idle=0, active=size, CLOUDFLARE_RATE_LIMIT="1000000", SEATBOT_DIRECTORY_CONCURRENCY="8"
        )
        await wait_synced(base, size)
        rss_before = rss_kb(bot.pid)
        times, requests = [], 0
        for run in range(3):
            before = await sandbox_counts(knobs)
            took, reply = await command(base, slack, "idle", f"warm-{size}-{run}")
            after = await sandbox_counts(knobs)
            requests += sum(after.values()) - sum(before.values())
            times.append(took)
            assert reply["text"].startswith(f"{size // 10:,} idle seats of {size:,} in use"), reply["text"]
        floor = await floor_read(stack.server.url)
        median = sorted(times)[1]
        rows.append(
            (
                f"`/seat idle` on a warm directory, {size:,} users ({size // 10:,} idle)",
                f"{median * 1000:.0f} ms (median of 3; floor: reading the facts from Redis "
                f"{floor * 1000:.0f} ms); {requests} Cloudflare requests in 3 runs; bot RSS "
                f"{rss_before / 1024:.0f} → {rss_kb(bot.pid) / 1024:.0f} MB; Redis facts hash "
                f"{FACTS_BYTES / 1e6:.1f} MB",
                "0 requests; RSS not growing with the account",
            )
        )
    finally:
        stack.down()


async def sweep(rows: list[tuple[str, str, str]]) -> None:
    """A 5,000-seat sweep on a warm directory, sandbox at 100 ms."""
    stack = Stack()
    try:
        base, knobs, slack, bot = await stack.up(idle=SWEEP, active=0)
        await wait_synced(base, SWEEP)
        trip = await one_round_trip(knobs.removesuffix("/_sandbox") + "/client/v4")
        rows.append(("one Cloudflare round trip (sandbox, the floor's unit)", f"{trip * 1000:.0f} ms", "—"))
        _, reply = await command(base, slack, "idle", "sweep-report")
        assert reply["text"].startswith(f"{SWEEP:,} idle seats"), reply["text"]
        before = await sandbox_counts(knobs)
        t_sweep, found = await click(base, slack, confirm_value(reply), "sweep")
        after = await sandbox_counts(knobs)
        patches = after.get("PATCH", 0) - before.get("PATCH", 0)
        gets = after.get("GET", 0) - before.get("GET", 0)
        outcome = next(r for r in found if r.get("response_type") == "in_channel")
        floor = math.ceil(SWEEP / 50) * trip
        rows.append(
            (
                f"sweep of {SWEEP:,} idle seats, warm directory (click → outcome posted)",
                f"{t_sweep:.1f} s; {patches} PATCH + {gets} GET = {patches + gets} requests; floor "
                f"{floor:.1f} s ({math.ceil(SWEEP / 50)} PATCH one after another, ×{t_sweep / floor:.2f}); "
                f"{outcome['text']}",
                f"{math.ceil(SWEEP / 50)} PATCH of 50, nothing else",
            )
        )
        rows.append(
            (
                "peak Cloudflare requests in any 5 minutes during the sweep",
                f"{patches + gets} (the sweep took {t_sweep:.0f} s, inside one window)",
                f"≤ {CF_LIMIT_PER_5MIN} (sweeps use the background share: ≤ {CF_LIMIT_PER_5MIN // 2})",
            )
        )
        rows.append(("bot RSS after the sweep (VmHWM)", f"{rss_kb(bot.pid, 'VmHWM') / 1024:.0f} MB", "—"))
    finally:
        stack.down()


async def main() -> None:
    rows: list[tuple[str, str, str]] = []
    sizes = [int(n) for n in os.environ.get("BENCH_IDLE_SIZES", "1000,10000,100000").split(",")]
    for size in sizes:
        await warm(size, rows)
    await sweep(rows)
    lines = [
        "## Idle seats: `/seat idle` and the sweep",
        "",
        report.stamp(),
        f"The sandbox answers every request after {LATENCY * 1000:.0f} ms; the bot runs as "
        "`python -m bot serve` with a private redis-server; fake Slack, sandbox and the load generator "
        "are separate processes on the same machine. Times are from the signed command (or click) to "
        "the reply arriving at the fake Slack. Floors: for a warm report, reading the directory's facts "
        "from Redis with the same batches; for the sweep, its PATCH requests one after another × one "
        "measured round trip.",
        "",
        *report.table(rows),
        "",
    ]
    report.write_section("idle", "\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["sandbox"]:
        port, latency, idle, active = sys.argv[2:6]
        serve_sandbox(int(port), float(latency), int(idle), int(active))
    else:
        asyncio.run(main())
