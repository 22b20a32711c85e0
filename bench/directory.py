"""`make bench ONLY=directory`: seat-UID look-ups and the directory sync at 1,000 / 10,000 / 100,000 users.

Real processes: a private redis-server, the sandbox Cloudflare (`python -m bot sandbox`) answering in
100 ms and enforcing 1,200 requests per rolling 5 minutes, the fake Slack, and the bot
(`python -m bot serve`) with the directory on or off. Look-ups are timed from the signed command to
the answer at its response_url; Cloudflare requests are counted by the sandbox.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report
from bench.run import rss_kb
from bench.stack import Stack as BaseStack
from bot.devtools.synthetic import synthetic_email, synthetic_uid
from tests.support.harness import command_body, sign

ADMIN = "UBENCHDIR"
LATENCY = 0.1
RATE_LIMIT = 1200
SIZES = [int(n) for n in os.environ.get("BENCH_DIRECTORY_SIZES", "1000,10000,100000").split(",")]
RUNS = 9
DEMO = 5  # the sandbox's demo users, listed before the synthetic ones


class Stack(BaseStack):
    def __init__(self) -> None:
        super().__init__(admin=ADMIN)

    def sandbox(self, **knobs: Any) -> dict[str, Any]:
        if knobs:
            return dict(httpx.put(self.knobs, json=knobs).json())
        return dict(httpx.get(self.knobs).json())

    def gets(self) -> int:
        return int(self.sandbox()["requests"].get("GET", 0))

    def bot(self, **env: str) -> tuple[Any, str]:
        bot = self.serve(**env)
        return bot.proc, bot.url

    async def command(self, base: str, text: str) -> tuple[float, str, int]:
        """Seconds from the signed command to its answer, the answer's text, Cloudflare GETs it took."""
        self.keys += 1
        key = f"dir{self.keys}"
        before = self.gets()
        body = command_body(text, user=ADMIN, channel="CBENCH", response_url=self.slack.response_url(key))
        async with httpx.AsyncClient(timeout=60) as http:
            t0 = time.perf_counter()
            await http.post(f"{base}/slack/events", content=body, headers=sign(body))
            (answer,) = await self.slack.wait(key, lambda found: len(found) >= 1, timeout=120)
            elapsed = time.perf_counter() - t0
        return elapsed, str(answer), self.gets() - before

    async def timed(self, base: str, *looks: tuple[str, str]) -> list[tuple[float, int]]:
        """For each (command, expected text): the median of RUNS look-ups and the most requests one took.
        The commands alternate, so each sees the same machine noise."""
        times: list[list[float]] = [[] for _ in looks]
        requests: list[list[int]] = [[] for _ in looks]
        for _ in range(RUNS):
            for i, (text, expect) in enumerate(looks):
                elapsed, answer, gets = await self.command(base, text)
                if expect not in answer:
                    raise SystemExit(f"/seat {text}: expected {expect!r} in {answer[:400]}")
                times[i].append(elapsed)
                requests[i].append(gets)
        return [(statistics.median(t), max(n)) for t, n in zip(times, requests, strict=True)]

    def directory_state(self, base: str) -> dict[str, Any]:
        return dict(httpx.get(f"{base}/healthz").json()["directory"])


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


async def one_size(stack: Stack, users: int, rows: list[tuple[str, str, str]], notes: list[str]) -> None:
    synthetic = users - DEMO
    last_uid, last_email = synthetic_uid(synthetic), synthetic_email(synthetic)
    stack.redis.flushall()
    stack.sandbox(synthetic=synthetic, latency=LATENCY, rate_limit=RATE_LIMIT, reset_requests=True)
    label = f"{users:,} users"

    # directory off: the scan of today (bounded by CLOUDFLARE_MAX_PAGES)
    proc, base = stack.bot(SEATBOT_DIRECTORY_REFRESH_SECONDS="0")
    try:
        expect = last_email if users <= 5000 else "could not be completed"
        ((off_t, off_n),) = await stack.timed(base, (f"status {last_uid}", expect))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    # directory on: the bot syncs at start (the directory is empty), Slack is served meanwhile
    stack.redis.flushall()
    stack.sandbox(reset_requests=True)
    memory_before = used_memory(stack.redis)
    started = time.perf_counter()
    proc, base = stack.bot(SEATBOT_DIRECTORY_REFRESH_SECONDS="86400")
    rss_before = rss_kb(proc.pid)
    during: list[float] = []
    try:
        while stack.directory_state(base)["state"] != "ready":
            if time.perf_counter() - started > 1200:
                raise SystemExit("the sync did not finish in 20 minutes")
            if len(during) < 5 and users >= 100_000:  # the interactive path during the sync
                elapsed, answer, _ = await stack.command(base, "status alice@example.com")
                if "alice@example.com" in answer:
                    during.append(elapsed)
            await asyncio.sleep(0.5)
        wall = time.perf_counter() - started
        raw: dict[bytes, bytes] = stack.redis.hgetall("{seatbot}:dir:meta")  # type: ignore[assignment]
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        box = stack.sandbox()
        rss_after = rss_kb(proc.pid)
        memory_after = used_memory(stack.redis)
        facts = int(stack.redis.memory_usage("{seatbot}:dir:facts", samples=0) or 0)
        (on_t, on_n), (floor, email_n) = await stack.timed(
            base, (f"status {last_uid}", last_email), (f"status {last_email}", last_email)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    ratio = on_t / floor
    rows.append(
        (
            f"UID look-up, {label} (last-listed user), directory ready",
            f"{on_t * 1000:.0f} ms, {on_n} requests; same look-up by email {floor * 1000:.0f} ms "
            f"({email_n} request) = the floor; ×{ratio:.2f}",
            "≤ 2 requests, ≤ 1.3× email",
        )
    )
    rows.append(
        (
            f"UID look-up, {label}, directory off (scan)",
            f"{off_t * 1000:.0f} ms, {off_n} requests"
            + (" — answer: look-up could not be completed" if users > 5000 else ""),
            "—",
        )
    )
    requests = int(meta["requests"])
    pages = int(meta["pages"])
    per_100 = requests / (users / 100)
    rows.append(
        (
            f"full sync, {label} (concurrency 4, share 0.5 of 1,200 / 5 min)",
            f"{float(meta['seconds']):.1f} s ({wall:.1f} s from process start to ready); "
            f"{requests:,} requests for {pages:,} pages ({per_100:.2f} per 100 users); "
            f"peak {box['rate_peak']:,} per 5 min; 429s: {box['rejected']}",
            "≤ 1 request per 100 users; no 429",
        )
    )
    if during:
        rows.append(
            (
                f"interactive `/seat status <email>` during the {label} sync (median of {len(during)})",
                f"{statistics.median(during) * 1000:.0f} ms",
                "answers during the sync",
            )
        )
    delta = memory_after - memory_before
    own = delta - facts
    rows.append(
        (
            f"Redis memory after the sync, {label} (INFO used_memory, after − before)",
            f"{delta / 1024 / 1024:.1f} MB: seat directory {own / 1024 / 1024:.1f} MB "
            f"({own / users:.0f} bytes per user) + the idle report's facts hash {facts / 1024 / 1024:.1f} MB",
            "stated per 100,000 users",
        )
    )
    rows.append(
        (
            f"bot RSS before / after the {label} sync",
            f"{rss_before / 1024:.1f} / {rss_after / 1024:.1f} MB",
            "does not grow with the account",
        )
    )
    if on_n > 2:
        notes.append(f"{label}: UID look-up took {on_n} requests (target ≤ 2).")
    if ratio > 1.3:
        notes.append(f"{label}: UID look-up ×{ratio:.2f} of the email look-up (target ≤ 1.3×).")
    if per_100 > 1.0001:
        notes.append(f"{label}: sync used {per_100:.2f} requests per 100 users (target ≤ 1).")
    if box["rejected"]:
        notes.append(f"{label}: the sandbox answered {box['rejected']} requests with 429.")


async def main() -> None:
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    with Stack() as stack:
        for users in SIZES:
            await one_size(stack, users, rows, notes)
            print(f"directory bench: {users:,} users done", flush=True)
    write(rows, notes)


def write(rows: list[tuple[str, str, str]], notes: list[str]) -> None:
    floor_sync = math.ceil(max(SIZES) / 100)
    intro = (
        f"The sandbox Cloudflare answers every request in {LATENCY * 1000:.0f} ms and enforces "
        f"{RATE_LIMIT:,} requests per rolling 5 minutes (429 past it); the bot is `python -m bot serve` "
        "with a private redis-server and the fake Slack, all on this machine. Look-ups are the median of "
        f"{RUNS} signed `/seat status` commands, timed to the answer at the response_url; the floor "
        "beside each is the same user looked up by email (one Cloudflare round trip). The sync's floor "
        f"is one request per 100 users ({floor_sync:,} requests at {max(SIZES):,} users): with the sync "
        "limited to half the budget (600 per 5 minutes, `SEATBOT_DIRECTORY_RATE_SHARE=0.5`) a "
        "100,000-user sync cannot take less than one 5-minute window plus the last 400 requests."
    )
    report.write_topic(
        "directory",
        "Seat directory: UID look-ups and syncs at 1,000 / 10,000 / 100,000 users",
        intro,
        rows,
        notes,
    )


if __name__ == "__main__":
    asyncio.run(main())
