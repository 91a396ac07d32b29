"""The console proxy against raw loopback TCP to the same display endpoint, in the same run.

    .venv/bin/python bench/console_proxy.py [--megabytes 256] [--pings 2000] [--sessions 10,50,100]

A synthetic "display" listens on loopback: after `T<8-byte length>` it streams that many bytes, after
`E` it echoes. A libvirt test-driver host reports it as a running VM's VNC display, so the real
`manage.py consoleproxy` (websockify, our plugins, a portal database in a temporary directory) finds
it exactly as it finds a guest's display, each connection opened with its own single-use ticket.

throughput: bytes/s streamed display -> client, raw TCP vs through the proxy (websocket client);
latency:    median round trip of a 64-byte echo, raw vs proxy; the difference is what the proxy adds;
sessions:   N consoles open at once (one forked proxy process each): time to open them, one echo on
            each, and memory per session as the proxy's process tree PSS and USS growth over N.
The clients are Python (websockify's own WebSocket class). The throughput ratio is printed last.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.consoles import ClientWebSocket, ConsoleStack, Stream  # noqa: E402

UUID = "be0c0000-0000-4000-8000-000000000001"
ORIGIN = "http://127.0.0.1:8000"
CHUNK = 64 * 1024


def display_server() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)

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

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, listener.getsockname()[1]


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
    def __init__(self, proxy_port: int, token: str, session: str) -> None:
        ws = ClientWebSocket({"Cookie": f"sessionid={session}"})
        ws.open(f"ws://127.0.0.1:{proxy_port}/websockify?token={token}", origin=ORIGIN, timeout=60)
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws, self.stream = ws, Stream(ws)

    def send(self, data: bytes) -> None:
        self.stream.write(data)

    def chunk(self) -> bytes:
        try:
            return self.stream.chunk()
        except ConnectionError:
            return b""

    def close(self) -> None:
        self.ws.socket.close()


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


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(PSS, USS, process count) in bytes of pid and its children."""
    pids = [pid, *_children(pid)]
    pss = uss = 0
    for each in pids:
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup.splitlines()[1:]}
        pss += fields.get("Pss", 0)
        uss += fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return pss, uss, len(pids)


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
    parser.add_argument("--sessions", default="10,50,100")
    args = parser.parse_args()
    levels = [int(n) for n in args.sessions.split(",")]

    _listener, display_port = display_server()
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    inventory = work / "inventory.xml"
    inventory.write_text(
        f"<node><domain type='test'><name>bench-display</name><uuid>{UUID}</uuid><memory>65536</memory>"
        f"<vcpu>1</vcpu><os><type>hvm</type></os><devices><graphics type='vnc' port='{display_port}'"
        " autoport='no'><listen type='address' address='127.0.0.1'/></graphics></devices></domain></node>")
    # Hundreds of consoles for one user, opened from ORIGIN: no per-user limits here.
    stack = ConsoleStack(work / "var", settings={"VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0",
                                                 "VMPORTAL_CONSOLE_OPEN_LIMIT": "0"})
    stack.var_dir.mkdir()
    stack.setup({"bench": f"test://{inventory}"})
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

    try:
        size = args.megabytes * 1024 * 1024
        pool = iter(tickets(8 + max(levels) * len(levels)))
        print(f"display: 127.0.0.1:{display_port}  proxy: 127.0.0.1:{proxy_port} (pid {proxy_pid})")

        rates: dict[str, list[float]] = {"raw": [], "proxy": []}
        for _ in range(3):  # alternate, keep the best of three each
            for name in ("raw", "proxy"):
                client = Raw(display_port) if name == "raw" else Proxied(proxy_port, next(pool), session)
                rates[name].append(stream_rate(client, size))
                client.close()
        raw_rate, proxy_rate = max(rates["raw"]), max(rates["proxy"])
        print(f"throughput raw TCP:     {raw_rate / 1e6:9.1f} MB/s  ({args.megabytes} MiB, best of 3)")
        print(f"throughput via proxy:   {proxy_rate / 1e6:9.1f} MB/s")

        raw_client, proxied = Raw(display_port), Proxied(proxy_port, next(pool), session)
        echo_rtts(raw_client, 100)
        raw_rtt = statistics.median(echo_rtts(raw_client, args.pings))
        proxy_rtt = statistics.median(echo_rtts(proxied, args.pings))
        raw_client.close()
        proxied.close()
        print(f"round trip raw TCP:     {raw_rtt * 1e6:9.1f} µs  (median of {args.pings} 64-byte echoes)")
        print(f"round trip via proxy:   {proxy_rtt * 1e6:9.1f} µs  (+{(proxy_rtt - raw_rtt) * 1e6:.1f} µs added)")

        time.sleep(3)  # let the closed sessions' processes exit
        for level in levels:
            base_pss, base_uss, _ = tree_memory(proxy_pid)
            start = time.perf_counter()
            sessions = [Proxied(proxy_port, next(pool), session) for _ in range(level)]
            opened = time.perf_counter() - start
            for each in sessions:
                each.send(b"E")
            rtts = []
            for each in sessions:
                rtts += echo_rtts_after_mode(each)
            time.sleep(1)
            pss, uss, processes = tree_memory(proxy_pid)
            print(f"{level:4d} sessions: opened in {opened:6.2f} s ({opened / level * 1e3:6.1f} ms each), "
                  f"echo median {statistics.median(rtts) * 1e6:7.1f} µs, {processes - 1} processes, "
                  f"memory per session PSS {(pss - base_pss) / level / 2**20:5.2f} MiB, "
                  f"USS {(uss - base_uss) / level / 2**20:5.2f} MiB")
            for each in sessions:
                each.close()
            time.sleep(3)
        print(f"throughput ratio proxy/raw: {proxy_rate / raw_rate:.3f}")
    finally:
        stack.stop()


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
