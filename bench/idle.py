"""`make bench ONLY=idle`: `/seat idle` and a 5,000-seat sweep on real processes, sandbox at 100 ms.

Starts a private redis-server, a sandbox Cloudflare seeded with idle users (its own process), the fake
Slack (its own process) and the bot (`python -m bot serve`). Measures the time from the signed
command to the report, the Cloudflare requests it cost, a 5,000-seat sweep (requests, time, requests
in the busiest 5 minutes) and the bot's RSS; writes the "idle" section of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report
from bench.run import RemoteSlack, rss_kb, start, wait_up
from bot.cloudflare.sandbox import DEMO_ACCOUNT_ID, DEMO_TOKEN
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, action_body, command_body, sign
from tests.support.servers import RedisServer, clean_env, free_port

ADMIN = "UBENCH1"
LATENCY = 0.1
SWEEP = 5_000
CF_LIMIT_PER_5MIN = 1200


def serve_sandbox(port: int, latency: float, idle: int, active: int) -> None:
    """The sandbox with `idle` idle users and `active` recently active ones, on a port."""
    import uvicorn

    from bot.cloudflare.demo_idle import idle_users
    from bot.cloudflare.sandbox import Sandbox, demo_user

    box = Sandbox(users=[], latency=latency)
    for user in idle_users(idle):
        box.add_user(user)
    for n in range(active):
        box.add_user(demo_user(f"active{n:06d}@example.com", "Active User", index=n))
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
        (reply,) = await slack.wait(key, lambda found: len(found) >= 1, timeout=300)
        return time.perf_counter() - t0, reply


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


async def main() -> None:
    rows: list[tuple[str, str, str]] = []
    server = RedisServer()
    server.start()
    procs = []
    try:
        cf_port, bot_port, slack_port = free_port(), free_port(), free_port()
        py = sys.executable
        env = clean_env(PYTHONPATH=str(ROOT))
        procs.append(start([py, "-m", "tests.support.fake_slack", str(slack_port)], env))
        slack = RemoteSlack(slack_port)
        wait_up(f"{slack.url}/_responses/x", procs[-1])
        cmd = [py, "-m", "bench.idle", "sandbox", str(cf_port), str(LATENCY), str(SWEEP), "100"]
        procs.append(start(cmd, env))
        knobs = f"http://127.0.0.1:{cf_port}/_sandbox"
        wait_up(knobs, procs[-1], timeout=120)
        cf_base = f"http://127.0.0.1:{cf_port}/client/v4"
        bot_env = clean_env(
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_API_URL=slack.api_url,
            PORT=str(bot_port),
            REDIS_URL=server.url,
            CLOUDFLARE_ACCOUNT_ID=DEMO_ACCOUNT_ID,
            CLOUDFLARE_API_TOKEN=DEMO_TOKEN,
            CLOUDFLARE_BASE_URL=cf_base,
            CLOUDFLARE_MAX_PAGES="1000",
            SEATBOT_ADMINS=ADMIN,
            SEATBOT_LOG_LEVEL="WARNING",
            SEATBOT_COMMAND_DEADLINE_SECONDS="600",
        )
        bot = start([py, "-m", "bot", "serve"], bot_env)
        procs.append(bot)
        wait_up(f"http://127.0.0.1:{bot_port}/healthz", bot)
        base = f"http://127.0.0.1:{bot_port}"
        trip = await one_round_trip(cf_base)
        rows.append(("one Cloudflare round trip (sandbox, the floor's unit)", f"{trip * 1000:.0f} ms", "—"))
        rss_before = rss_kb(bot.pid)

        before = await sandbox_counts(knobs)
        took, reply = await command(base, slack, "idle", "idle-report")
        after = await sandbox_counts(knobs)
        gets = after.get("GET", 0) - before.get("GET", 0)
        users = SWEEP + 100
        rows.append(
            (
                f"`/seat idle`, {users:,} users ({SWEEP:,} idle), user list scanned (no directory)",
                f"{took:.2f} s, {gets} Cloudflare requests (floor {gets} × {trip * 1000:.0f} ms = "
                f"{gets * trip:.1f} s, pages one after another)",
                "0 requests on a warm directory (see below)",
            )
        )
        assert reply["text"].startswith(f"{SWEEP:,} idle seats"), reply["text"]

        before = await sandbox_counts(knobs)
        t_sweep, found = await click(base, slack, confirm_value(reply), "idle-sweep")
        after = await sandbox_counts(knobs)
        patches = after.get("PATCH", 0) - before.get("PATCH", 0)
        gets = after.get("GET", 0) - before.get("GET", 0)
        outcome = next(r for r in found if r.get("response_type") == "in_channel")
        total = patches + gets
        floor = (math.ceil(SWEEP / 50) + gets) * trip
        rows.append(
            (
                f"sweep of {SWEEP:,} idle seats (click → outcome posted)",
                f"{t_sweep:.1f} s; {patches} PATCH + {gets} GET (re-check) = {total} requests; "
                f"floor {floor:.1f} s (×{t_sweep / floor:.2f}); outcome: {outcome['text']}",
                f"{math.ceil(SWEEP / 50)} PATCH of 50; ≤ {CF_LIMIT_PER_5MIN} requests / 5 min",
            )
        )
        rows.append(
            (
                "peak Cloudflare requests in any 5 minutes during the sweep",
                f"{total} (the whole sweep took {t_sweep:.0f} s, inside one window)",
                f"≤ {CF_LIMIT_PER_5MIN}",
            )
        )
        rows.append(
            (
                "bot RSS before the report / after the sweep (VmHWM peak)",
                f"{rss_before / 1024:.0f} MB / {rss_kb(bot.pid) / 1024:.0f} MB "
                f"({rss_kb(bot.pid, 'VmHWM') / 1024:.0f} MB)",
                "—",
            )
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        server.stop()
    lines = [
        "## Idle seats: `/seat idle` and the sweep",
        "",
        report.stamp(),
        f"The sandbox answers every request after {LATENCY * 1000:.0f} ms; the bot runs as "
        "`python -m bot serve`; fake Slack, sandbox, redis-server and the load generator are separate "
        "processes on the same machine. Floors: the Cloudflare requests the step needs × one measured "
        "round trip, sent one after another.",
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
