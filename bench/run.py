"""`make bench`: the bot against a bare Bolt app, on real processes, ports and Redis.

Starts a private redis-server, the sandbox Cloudflare (`python -m bot sandbox`), a fake Slack
(response_urls and Web API), the bot (`python -m bot serve`, the Procfile's web line) and a bare Bolt
app on the same stack. Measures ack latency, click → outcome, Redis commands per flow, RSS, start-up
and a 50-target revoke; writes docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report
from bench.stack import RemoteSlack, Stack
from tests.support.harness import action_body, command_body, sign

ADMIN = "UBENCH1"
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1200"))
ROUNDS = 4
LOOKUP_CONCURRENCY = 8
CF_LIMIT_PER_5MIN = 1200


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def ack_times(base: str, slack: RemoteSlack, text: str, *, concurrency: int, n: int) -> list[float]:
    times: list[float] = []
    limit = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as http:

        async def one(i: int) -> None:
            body = command_body(text, user=ADMIN, channel="CBENCH", response_url=slack.response_url(f"b{i}"))
            headers = sign(body)
            async with limit:
                t0 = time.perf_counter()
                response = await http.post("/slack/events", content=body, headers=headers)
                times.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.status_code

        await asyncio.gather(*(one(i) for i in range(n)))
    return times


async def full_flow(base: str, slack: RemoteSlack, text: str, key: str) -> tuple[float, float]:
    """Command → card, then click → outcome posted; returns both durations."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = command_body(text, user=ADMIN, channel="CBENCH", response_url=slack.response_url(key))
        t0 = time.perf_counter()
        await http.post("/slack/events", content=body, headers=sign(body))
        (card,) = await slack.wait(key, lambda found: len(found) >= 1)
        t_card = time.perf_counter() - t0
        value = next(e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"])
        click = action_body(
            "seat_confirm", value, user=ADMIN, channel="CBENCH", response_url=slack.response_url(key + "c")
        )
        t1 = time.perf_counter()
        await http.post("/slack/events", content=click, headers=sign(click))
        await slack.wait(key + "c", lambda found: any(r.get("response_type") == "in_channel" for r in found))
        return t_card, time.perf_counter() - t1


def commandstats(url: str) -> dict[str, int]:
    stats = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


# What one revoke by email needs of Redis by design: the card (SET) and its claim (one script); the
# claim marked done; a rate-budget slot for each of the 2 Cloudflare requests (shared by every
# process: issue 9); the directory's write-back of what Cloudflare said, in one MULTI…EXEC.
# The freed seat is also marked in the idle facts (read, then write: issue 13).
DESIGN_TRIPS = 8
DESIGN_WHY = "card SET + claim, claim done, 2 rate-budget slots, directory write-back, idle facts 2"


class MonitorThread(threading.Thread):
    """Counts commands by origin with MONITOR: sent by a client, or run by a Lua script."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.sent: collections.Counter[str] = collections.Counter()
        self.inside: collections.Counter[str] = collections.Counter()
        self.in_multi: set[str] = set()  # clients inside MULTI: their block is one round trip
        self.done = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:  # type: ignore[no-untyped-call]
            for event in monitor.listen():
                if self.done.is_set():
                    return
                name = event["command"].split()[0].strip('"').lower()
                if name in ("ping", "client", "hello", "info", "monitor"):
                    continue
                if event.get("client_type") == "lua":
                    self.inside[name] += 1
                    continue
                client = str(event.get("client_address", "")) + str(event.get("client_port", ""))
                if name == "multi":
                    self.in_multi.add(client)
                    self.sent["multi…exec"] += 1
                elif name == "exec":
                    self.in_multi.discard(client)
                elif client not in self.in_multi:
                    self.sent[name] += 1

    def stop(self) -> tuple[dict[str, int], dict[str, int]]:
        self.done.set()
        self.client.ping()  # wakes the listener so it sees `done`
        self.join(timeout=5)
        return dict(self.sent), dict(self.inside)


async def main() -> None:
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    with Stack(admin=ADMIN) as stack:
        server, slack, cf_knobs = stack.server, stack.slack, stack.knobs
        httpx.put(cf_knobs, json={"seed": 60})
        started = stack.serve(
            WEB_CONCURRENCY="1",
            CLOUDFLARE_LOOKUP_CONCURRENCY=str(LOOKUP_CONCURRENCY),
            # the job runner's own polling would be counted with the flow's round trips
            SEATBOT_JOB_RUNNER="false",
        )
        bot = started.proc
        stack.procs.append(bot)
        base = started.url
        httpx.put(cf_knobs, json={"latency": 0.0})
        # MONITOR tells what clients sent from what a Lua script ran inside the server.
        await full_flow(base, slack, "revoke user041@example.com", "redis-warm-up")  # scripts loaded
        watcher = MonitorThread(server.url)
        watcher.start()
        time.sleep(0.2)
        before = commandstats(server.url)
        await full_flow(base, slack, "revoke user040@example.com", "redis-count")
        time.sleep(0.2)
        after = commandstats(server.url)
        sent, inside = watcher.stop()
        stats = {
            k: after[k] - before.get(k, 0)
            for k in after
            if after[k] != before.get(k, 0) and k not in ("info", "hello")
        }
        audit = sent.pop("xadd", 0)
        total = sum(sent.values())
        rows.append(
            (
                "Redis round trips per full revoke flow by email (command + click; MULTI…EXEC once)",
                f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(sent.items()))}) + audit xadd {audit}; "
                f"run inside the claim script: {', '.join(f'{k} {v}' for k, v in sorted(inside.items()))} "
                f"(INFO commandstats counts both: {', '.join(f'{k} {v}' for k, v in sorted(stats.items()))})",
                f"≤ {DESIGN_TRIPS} besides the audit write: {DESIGN_WHY}",
            )
        )
        if total > DESIGN_TRIPS:
            notes.append(
                f"{total} Redis round trips per flow besides the audit write ({DESIGN_TRIPS} by design)."
            )

        httpx.put(cf_knobs, json={"latency": 0.1, "reset_requests": True})
        emails = [f"user{n:03d}@example.com" for n in range(11, 61)]
        t_card, t_outcome = await full_flow(base, slack, "revoke " + " ".join(emails), "fifty")
        stats = httpx.get(cf_knobs).json()["requests"]
        planned = stats.get("GET", 0) + stats.get("PATCH", 0)
        floor = math.ceil(50 / LOOKUP_CONCURRENCY) * 0.1 + math.ceil(50 / 50) * 0.1
        took = t_card + t_outcome
        rows.append(
            (
                "50-target revoke by email, sandbox latency 100 ms (command → card + click → outcome)",
                f"{t_card * 1000:.0f} + {t_outcome * 1000:.0f} = {took * 1000:.0f} ms; "
                f"floor {floor * 1000:.0f} ms "
                f"(×{took / floor:.2f}); {planned} Cloudflare requests",
                f"≤ 1.5× floor; ≤ {CF_LIMIT_PER_5MIN} requests / 5 min",
            )
        )
        rows.append(("peak RSS (bot, VmHWM)", f"{rss_kb(bot.pid, 'VmHWM') / 1024:.1f} MB", "—"))
        if took > 1.5 * floor:
            notes.append(f"50-target revoke took ×{took / floor:.2f} of its floor (target 1.5×).")
    write(rows, notes)


def write(rows: list[tuple[str, str, str]], notes: list[str]) -> None:
    intro = (
        "The bot runs as `python -m bot serve` (one worker) against redis-server, the sandbox Cloudflare "
        "and a fake Slack, all on the same machine. Acks and click → result: the `edge` section."
    )
    report.write_topic("flow", "Full revoke flow: Redis round trips, a 50-target revoke", intro, rows, notes)


# Each topic is one coroutine writing its own section of docs/benchmarks.md (bench/report.py).
async def directory() -> None:
    from bench.directory import main as directory_main  # imported late: it builds on this module

    await directory_main()


TOPICS: dict[str, Callable[[], Awaitable[None]]] = {
    "edge": lambda: __import__("bench.edge", fromlist=["main"]).main(),
    "flow": main,
    "idle": lambda: __import__("bench.idle", fromlist=["main"]).main(),
    "directory": directory,
    "schedule": lambda: __import__("bench.schedule", fromlist=["main"]).main(),
    "hostile": lambda: __import__("bench.hostile", fromlist=["main"]).main(),
}


async def run_topics(names: list[str]) -> None:
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise SystemExit(f"unknown bench topic(s) {unknown}; known: {sorted(TOPICS)}")
    for name in names or list(TOPICS):
        await TOPICS[name]()


if __name__ == "__main__":
    asyncio.run(run_topics(sys.argv[1:]))
