"""Ack load generator, run in its own process: `python -m bench.loadgen CLIENT URL TEXT CONCURRENCY N`.

Every request is built and signed before the clock starts; `concurrency` keep-alive connections each
send the next request as soon as the previous answer is in; one JSON line of latencies (seconds)
goes to stdout. Clients, fastest last: `httpx` (the old generator), `aiohttp`, `raw` (asyncio
streams, hand-parsed HTTP/1.1). The bench shows the bare app's figure per client: when a faster
client no longer moves it, the client is not what is being measured.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import command_body, sign

ADMIN = "UBENCH1"
Send = Callable[[bytes, dict[str, str]], Awaitable[int]]


def requests(text: str, n: int, slack_url: str) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for i in range(n):
        body = command_body(text, user=ADMIN, channel="CBENCH", response_url=f"{slack_url}/response/l{i}")
        out.append((body.encode(), sign(body)))
    return out


async def run(client: str, url: str, text: str, concurrency: int, n: int, slack_url: str) -> list[float]:
    todo = requests(text, n, slack_url)
    times: list[float] = []
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def worker(send: Send) -> None:
        while todo:
            body, headers = todo.pop()
            t0 = time.perf_counter()
            status = await send(body, headers)
            times.append(time.perf_counter() - t0)
            if status != 200:
                raise SystemExit(f"status {status}")

    if client == "raw":

        async def raw_worker() -> None:
            reader, writer = await asyncio.open_connection(host, port)

            async def send(body: bytes, headers: dict[str, str]) -> int:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(
                    f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
                    f"{head}\r\n".encode()
                    + body
                )
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                return int(status_line.split()[1])

            await worker(send)
            writer.close()

        await asyncio.gather(*(raw_worker() for _ in range(concurrency)))
    elif client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send(body: bytes, headers: dict[str, str]) -> int:
                async with session.post(url + "/slack/events", data=body, headers=headers) as response:
                    await response.read()
                    return response.status

            await asyncio.gather(*(worker(send) for _ in range(concurrency)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:

            async def send(body: bytes, headers: dict[str, str]) -> int:
                return (await http.post("/slack/events", content=body, headers=headers)).status_code

            await asyncio.gather(*(worker(send) for _ in range(concurrency)))
    return times


async def null_server(port: int) -> None:
    """An HTTP/1.1 server that answers every request at once: what the generator costs by itself."""

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if not line:
                break
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}")

    server = await asyncio.start_server(one, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "null-server":
        asyncio.run(null_server(int(sys.argv[2])))
        sys.exit(0)
    client, url, text, concurrency, n, slack_url = sys.argv[1:7]
    result = asyncio.run(run(client, url, text, int(concurrency), int(n), slack_url))
    print(json.dumps(result))
