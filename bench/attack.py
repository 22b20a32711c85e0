"""The hostile clients of `make bench ONLY=hostile`, in a process of their own (bounded in count and time).

`python -m bench.attack slow <port> <connections> <seconds>`: that many connections from one address
(127.0.0.2), each trickling one byte of a request every 2 s and reconnecting when closed.
`python -m bench.attack bodies <port> <connections> <seconds>`: that many connections, each from its
own address (127.0.1.1 …), each announcing a 512 KiB unsigned body, sending 500 KiB of it and stalling;
reconnecting (after 0.2 s) when closed. Prints what happened as JSON: connects, closes by the server.
Loopback only: every address is in 127/8.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

HEAD = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
HEAD += b"X-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=00\r\n"


def address(n: int) -> str:
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


async def one(kind: str, port: int, n: int, until: float, counts: dict[str, int]) -> None:
    source = "127.0.0.2" if kind == "slow" else address(n)
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            counts["connect_failed"] += 1
            await asyncio.sleep(0.2)
            continue
        counts["connects"] += 1
        try:
            if kind == "slow":
                request = HEAD + b"Content-Length: 100\r\n\r\n" + b"a" * 100
                for byte in request:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    try:  # wait 2 s for the next byte, or the server closing
                        if (
                            await asyncio.wait_for(reader.read(4096), min(2.0, until - time.monotonic()))
                            == b""
                        ):
                            break
                    except TimeoutError:
                        if time.monotonic() >= until:
                            break
            else:
                writer.write(HEAD + b"Content-Length: 524288\r\n\r\n" + b"a" * 500 * 1024)
                await writer.drain()
                await asyncio.wait_for(reader.read(4096), max(0.01, until - time.monotonic()))
                await asyncio.sleep(0.2)
            counts["closed_by_server"] += 1
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


async def main(kind: str, port: int, connections: int, seconds: float) -> None:
    counts = {"connects": 0, "connect_failed": 0, "closed_by_server": 0}
    until = time.monotonic() + seconds
    await asyncio.gather(*(one(kind, port, n, until, counts) for n in range(connections)))
    print(json.dumps(counts))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
