"""The console proxy against raw loopback TCP to the same display endpoint, in the same run.

    .venv/bin/python bench/console_proxy.py [--megabytes 256] [--pings 2000] [--sessions 10,50,200]

A synthetic "display" listens on loopback: after `T<8-byte length>` it streams that many bytes, after
`E` it echoes. A libvirt test-driver host reports it as a running VM's VNC display, so the real
`manage.py consoleproxy` (websockify, our plugins, a portal database in a temporary directory) finds
it exactly as it finds a guest's display, each connection opened with its own single-use ticket.

throughput: bytes/s streamed display -> client, raw TCP vs through the proxy (websocket client);
latency:    median round trip of a 64-byte echo, raw vs proxy; the difference is what the proxy adds;
sessions:   N consoles open at once: time to open them, one echo on each, and memory per session as
            the growth of the proxy's process tree (PSS and USS) over N, with its processes, threads
            and open files. Tickets are issued a batch at a time just before their consoles open:
            they expire 30 s after they are issued.
The clients are Python (websockify's own WebSocket class, reading as much as has arrived, as the raw
client does). The throughput ratio is printed last.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.consoles import ClientWebSocket, ConsoleStack, Stream, display_host_uri  # noqa: E402

UUID = "be0c0000-0000-4000-8000-000000000001"
ORIGIN = "http://127.0.0.1:8000"
CHUNK = 64 * 1024
TICKET_BATCH = 50  # consoles opened on one batch of tickets, well within the tickets' 30 s
STREAM_ROUNDS = 5  # raw and proxied streams taken in turns; the machine's other work makes single runs vary


def display_server() -> tuple[BaseProcess, int]:
    """The synthetic display, in a process of its own as a guest's is: the clients' Python work in this
    process would otherwise take turns with it for one interpreter lock."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(target=_serve_display, args=(listener,), daemon=True)
    process.start()  # before this process starts any thread
    listener.close()
    return process, port


def _serve_display(listener: socket.socket) -> None:
    def serve(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mode = conn.recv(1)
            if mode == b"T":
                remaining = struct.unpack(">Q", _exact(conn, 8))[0]
                block = os.urandom(CHUNK)
                while remaining > 0:
                    remaining -= conn.send(block[:remaining] if remaining < CHUNK else block)
                return
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def _exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def chunk(self) -> bytes:
        return self.sock.recv(1 << 20)

    def close(self) -> None:
        self.sock.close()


class Proxied:
    """A console through the proxy. websockify's client opens it and masks what it sends; what the proxy sends
    is read as the raw client reads the display: whatever has arrived, up to 1 MiB, in one call (minus the
    frames' headers). websockify's client would slice its buffer twice a frame, and be what is measured."""

    def __init__(self, proxy_port: int, token: str, session: str) -> None:
        ws = ClientWebSocket({"Cookie": f"sessionid={session}"})
        ws.open(f"ws://127.0.0.1:{proxy_port}/websockify?token={token}", origin=ORIGIN, timeout=60)
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws, self.stream = ws, Stream(ws)
        self.sock: socket.socket = ws.socket
        self.early = bytes(ws._recv_buffer)  # what came with the handshake's answer, if anything
        self.frame_left = 0  # payload bytes of the current frame not read yet

    def send(self, data: bytes) -> None:
        self.stream.write(data)

    def chunk(self) -> bytes:
        """The next bytes the proxy relays; b"" once it closes."""
        try:
            while not self.frame_left:
                head = self._exact(2)
                length = head[1] & 0x7F
                if length >= 126:
                    length = int.from_bytes(self._exact(2 if length == 126 else 8), "big")
                opcode = head[0] & 0x0F
                if opcode == 0x8:
                    return b""
                if opcode in (0x0, 0x2):  # continuation or binary: the display's bytes
                    self.frame_left = length
                else:  # a ping: nothing here needs answering within the benchmark's time
                    self._exact(length)
            data = self._take(self.frame_left) or self.sock.recv(min(self.frame_left, 1 << 20))
        except ConnectionError:
            return b""
        self.frame_left -= len(data)
        return data

    def _exact(self, count: int) -> bytes:
        data = self._take(count)
        while len(data) < count:
            received = self.sock.recv(count - len(data))
            if not received:
                raise ConnectionError("the proxy closed the connection")
            data += received
        return data

    def _take(self, count: int) -> bytes:
        data, self.early = self.early[:count], self.early[count:]
        return data

    def close(self) -> None:
        self.sock.close()


def stream_rate(client: Raw | Proxied, size: int) -> float:
    start = time.perf_counter()
    client.send(b"T" + struct.pack(">Q", size))
    received = 0
    while received < size:
        chunk = client.chunk()
        if not chunk:
            raise ConnectionError(f"closed after {received} of {size} bytes")
        received += len(chunk)
    return size / (time.perf_counter() - start)


def echo_rtts(client: Raw | Proxied, count: int) -> list[float]:
    client.send(b"E")
    payload, rtts = os.urandom(64), []
    for _ in range(count):
        start = time.perf_counter()
        client.send(payload)
        got = b""
        while len(got) < len(payload):
            got += client.chunk()
        rtts.append(time.perf_counter() - start)
    return rtts


@dataclass(frozen=True)
class Tree:
    """The proxy's process tree: PSS and USS in bytes, processes, threads, open files."""

    pss: int
    uss: int
    processes: int
    threads: int
    files: int


def process_tree(pid: int) -> Tree:
    pids = [pid, *_children(pid)]
    pss = uss = threads = files = 0
    for each in pids:
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
            threads += len(list(Path(f"/proc/{each}/task").iterdir()))
            files += len(list(Path(f"/proc/{each}/fd").iterdir()))
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup.splitlines()[1:]}
        pss += fields.get("Pss", 0)
        uss += fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return Tree(pss, uss, len(pids), threads, files)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--sessions", default="10,50,200")
    args = parser.parse_args()
    levels = [int(n) for n in args.sessions.split(",")]

    display, display_port = display_server()
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    # Hundreds of consoles for one user, opened from ORIGIN: no per-user limits here.
    stack = ConsoleStack(work / "var", settings={"VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0",
                                                 "VMPORTAL_CONSOLE_OPEN_LIMIT": "0"})
    stack.var_dir.mkdir()
    stack.setup({"bench": display_host_uri(work / "inventory.xml", {"bench-display": (UUID, display_port)})})
    stack.user("bench", grants=(("bench", UUID),))
    session = stack.login("bench")
    proxy_port = stack.proxy()
    proxy_pid = stack.processes[-1].pid

    def tickets(count: int) -> list[str]:
        return list(stack.shell(
            "from consoles import services\nfrom accounts.models import User\n"
            "user = User.objects.get(username='bench')\nresult = []\n"
            f"for _ in range({count}):\n"
            "    result += services.console_tickets_issue(actor=user, host_name='bench',"
            f" uuid={UUID!r}, origin={ORIGIN!r}).tokens\n"))

    def console() -> Proxied:
        return Proxied(proxy_port, tickets(1)[0], session)

    try:
        size = args.megabytes * 1024 * 1024
        print(f"display: 127.0.0.1:{display_port}  proxy: 127.0.0.1:{proxy_port} (pid {proxy_pid})")

        rates: dict[str, list[float]] = {"raw": [], "proxy": []}
        for token in tickets(STREAM_ROUNDS):  # alternate, keep the best of each
            for client in (Raw(display_port), Proxied(proxy_port, token, session)):
                rates["raw" if isinstance(client, Raw) else "proxy"].append(stream_rate(client, size))
                client.close()
        raw_rate, proxy_rate = max(rates["raw"]), max(rates["proxy"])
        print(f"throughput raw TCP:     {raw_rate / 1e6:9.1f} MB/s  ({args.megabytes} MiB, best of {STREAM_ROUNDS})")
        print(f"throughput via proxy:   {proxy_rate / 1e6:9.1f} MB/s")

        raw_client, proxied = Raw(display_port), console()
        echo_rtts(raw_client, 100)
        raw_rtt = statistics.median(echo_rtts(raw_client, args.pings))
        proxy_rtt = statistics.median(echo_rtts(proxied, args.pings))
        raw_client.close()
        proxied.close()
        print(f"round trip raw TCP:     {raw_rtt * 1e6:9.1f} µs  (median of {args.pings} 64-byte echoes)")
        print(f"round trip via proxy:   {proxy_rtt * 1e6:9.1f} µs  (+{(proxy_rtt - raw_rtt) * 1e6:.1f} µs added)")

        # A few consoles opened and closed first: the first level then neither pays for the proxy's first
        # allocations for consoles nor gets credit for the throughput runs' buffers freed meanwhile.
        for warm_up in [Proxied(proxy_port, token, session) for token in tickets(10)]:
            warm_up.close()
        time.sleep(3)  # let the closed sessions end
        for level in levels:
            base = process_tree(proxy_pid)
            sessions, opened = [], 0.0
            for batch in range(0, level, TICKET_BATCH):
                tokens = tickets(min(TICKET_BATCH, level - batch))  # issued before the clock starts
                start = time.perf_counter()
                sessions += [Proxied(proxy_port, token, session) for token in tokens]
                opened += time.perf_counter() - start
            for each in sessions:
                each.send(b"E")
            rtts = []
            for each in sessions:
                rtts += echo_rtts_after_mode(each)
            time.sleep(1)
            tree = process_tree(proxy_pid)
            print(f"{level:4d} sessions: opened in {opened:6.2f} s ({opened / level * 1e3:6.1f} ms each), "
                  f"echo median {statistics.median(rtts) * 1e6:7.1f} µs, {tree.processes} processes, "
                  f"{tree.threads} threads, {tree.files} open files, "
                  f"memory per session PSS {(tree.pss - base.pss) / level / 2**20:5.2f} MiB, "
                  f"USS {(tree.uss - base.uss) / level / 2**20:5.2f} MiB")
            for each in sessions:
                each.close()
            time.sleep(3)
        print(f"throughput ratio proxy/raw: {proxy_rate / raw_rate:.3f}")
    finally:
        stack.stop()
        display.terminate()


def echo_rtts_after_mode(client: Proxied) -> list[float]:
    payload = os.urandom(64)
    start = time.perf_counter()
    client.send(payload)
    got = b""
    while len(got) < len(payload):
        got += client.chunk()
    return [time.perf_counter() - start]


if __name__ == "__main__":
    main()
