"""A delaying relay: what `tc netem delay` does on kernels that have it, for the TCP connections of one host.

Runs inside a lab host's network namespace (lab.network.set_link starts it). iptables there
redirects every TCP connection arriving on the host's link to this relay, which reads where the
client meant to go (SO_ORIGINAL_DST), connects there itself (its own connections leave through
OUTPUT, so they are not redirected again) and forwards each chunk `delay` after it arrived, in
both directions. Chunks keep their order and the delay does not add up: a chunk waits until its
own due time, not behind the sleep of the one before.

    python -m lab.delay PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_destination(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


async def _delayed_copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            when, chunk = await due.get()
            await asyncio.sleep(max(0.0, when - time.monotonic()))
            if not chunk:
                writer.write_eof() if writer.can_write_eof() else writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            chunk = await reader.read(65536)
            due.put_nowait((time.monotonic() + delay, chunk))
            if not chunk:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


async def _relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, delay: float) -> None:
    client = client_writer.get_extra_info("socket")
    try:
        host, port = original_destination(client)
        server_reader, server_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(_delayed_copy(client_reader, server_writer, delay),
                             _delayed_copy(server_reader, client_writer, delay))
    finally:
        server_writer.close()
        client_writer.close()


async def serve(port: int, delay: float) -> None:
    server = await asyncio.start_server(lambda r, w: _relay(r, w, delay), "0.0.0.0", port)  # noqa: S104 - in the host
    print("ready", flush=True)  # lab.network.set_link redirects connections here once it reads this
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    port, delay_ms = int(argv[0]), int(argv[1])
    asyncio.run(serve(port, delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
