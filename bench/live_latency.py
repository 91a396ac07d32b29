"""How long a libvirt state change takes to reach every open page, on the in-memory and Redis layers.

    .venv/bin/python bench/live_latency.py [--clients 1,100,1000] [--changes 30] [--setups memory,redis,redis-2]
                                           [--profile DIR] [--per-change]

Three set-ups, each with real daphne serving the real ASGI application and the watcher of test:///default:
    memory    one process: the default deployment (the application starts the watchers with its first
              connection), the in-memory layer;
    redis     one process, Redis between the watchers (run as `manage.py watchhosts` does) and the pages,
              even though they happen to share the process;
    redis-2   the scale-out of the README: the watchers in a process of their own, two daphne processes
              sharing the pages (half each), all through Redis.
Redis is Debian's redis-server on a free loopback port, from a temporary directory.
The watching process pauses and resumes the `test` VM in turns, noting the wall-clock time just before each
libvirt call; a separate client process holds N real websocket connections to /ws/domains/?all,
as N operators' list pages, and notes when each receives the row with the new state.
Latency = arrival - libvirt call, per client per change; p50 and p99 over all of them, and the updates
that never arrived (the benchmark exits non-zero if any is missing). On a machine other work keeps busy
latency says more about the neighbours than about the push: the servers' CPU time per change and page
(from /proc, while the changes run) is the steadier measure of the work an event costs. Last, the p99
against a 3 s polling interval (the best of older panels, which poll every 3 to 10 s). --profile writes
each server process's cProfile statistics to DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.stats import percentile  # noqa: E402
from tests.support.changing_watchers import TEST_UUID, prepare_portal  # noqa: E402
from tests.support.portal import (  # noqa: E402
    PING,
    PONG,
    TEXT,
    control_frame,
    free_port,
    portal_env,
    raise_file_limit,
    stop_process,
    upgrade_request,
    wait_for_port,
)

PYTHON = sys.executable
SERVER = [PYTHON, "-m", "tests.support.changing_watchers"]  # the watchers, or daphne (--daphne PORT)
POLL_SECONDS = 3.0
TARGET_P99_MS = 100.0


# --- The client process: N websockets, each noting when each row arrives. ---


class Page(asyncio.Protocol):
    """One list page's websocket, noting when each row of the `test` VM arrives and in which state.

    Frames are read as they come in (data_received), with no task or stream per page: a thousand pages in
    one client process then cost it a few microseconds a message, leaving the machine's CPU to the servers
    being measured (on two cores, the client's asyncio streams used to take a core of their own).
    """

    ROW = b'hx-swap-oob="upsert:#results tbody"', f'<tr id="domain-embedded-{TEST_UUID}"'.encode()
    STATES = tuple((state, f'data-state="{state}"'.encode()) for state in ("paused", "running"))

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.arrivals: list[tuple[float, str]] = []
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionRefusedError(head.split(b"\r\n", 1)[0].decode()))
                return
            self.opened.set_result(None)
        while (frame := self._next_frame()) is not None:
            opcode, payload = frame
            if opcode == PING:  # as a browser does: daphne closes a socket whose pings go unanswered
                assert self.transport is not None
                self.transport.write(control_frame(PONG, payload))
            elif opcode == TEXT and all(part in payload for part in self.ROW):
                self.arrivals += [(now, state) for state, attribute in self.STATES if attribute in payload]

    def _next_frame(self) -> tuple[int, bytes] | None:
        """The first whole frame in the buffer (a server's: unmasked), taken out of it."""
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        length, start = buffer[1] & 0x7F, 2
        if length >= 126:
            start = 4 if length == 126 else 10
            if len(buffer) < start:
                return None
            length = int.from_bytes(buffer[2:start], "big")
        if len(buffer) < start + length:
            return None
        frame = buffer[0] & 0x0F, bytes(buffer[start:start + length])
        del buffer[:start + length]
        return frame


async def open_page(port: int, session_key: str) -> Page:
    page = Page(upgrade_request(port, "/ws/domains/?all", session_key=session_key))
    await asyncio.get_running_loop().create_connection(lambda: page, "127.0.0.1", port)
    await page.opened
    return page


async def clients(ports: list[int], count: int, session_key: str, seconds: float) -> None:
    raise_file_limit()
    opened: list[Page] = []
    for start in range(0, count, 50):  # a page load at a time would be slower still; 50 at once is polite
        opened += await asyncio.gather(*(open_page(ports[page % len(ports)], session_key)
                                         for page in range(start, min(count, start + 50))))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "done": the changes are over
    await asyncio.sleep(seconds)
    # Before the pages close: the servers' CPU per change is measured up to this line, without their goodbyes.
    print(json.dumps({"arrivals": [page.arrivals for page in opened]}), flush=True)
    for page in opened:
        assert page.transport is not None
        page.transport.close()


# --- The orchestra. ---


class Process:
    """A server or client process spoken to through its standard input and output; `stderr` takes its logs."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: IO[str] | None = None) -> None:
        self.popen = subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=stderr, text=True)

    def expect(self, prefix: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        assert self.popen.stdout is not None
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.popen.args!r} exited {self.popen.wait()}")
            if line.startswith(prefix):
                return line
        raise TimeoutError(prefix)

    def say(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stop(self) -> None:
        """Its stdin closed first: a watching process stops by itself (and writes its profile)."""
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop_process(self.popen)


def cpu_seconds(process: Process) -> float:
    """The CPU time a process used so far (all its threads): less at the mercy of a busy machine than latency."""
    fields = Path(f"/proc/{process.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def measure(env: dict[str, str], servers: list[Process], ports: list[int], session_key: str, count: int,
            changes: int, per_change: bool = False) -> tuple[list[float], int, float]:
    """Latencies (ms), updates that never arrived, and the servers' CPU time per change (s) meanwhile."""
    watcher = servers[0]
    interval = 0.25 if count <= 100 else 1.0  # a change per page every quarter second is plenty
    client = Process([PYTHON, __file__, "clients", "--ports", ",".join(map(str, ports)), "--count", str(count),
                      "--cookie", session_key, "--linger", str(2 + count / 500)], env)
    try:
        client.expect("ready", timeout=600)
        time.sleep(1.5)  # the freshly started watcher's first listing reaches the pages first
        cpu_before = sum(map(cpu_seconds, servers))
        watcher.say(f"go {changes} {interval}")
        done = json.loads(watcher.expect("{", timeout=300))["changes"]
        client.say("done")
        arrivals = json.loads(client.expect("{", timeout=300))["arrivals"]  # after what was on its way
        cpu = (sum(map(cpu_seconds, servers)) - cpu_before) / changes
    finally:
        client.stop()
    # Rows arrive in order. Change k is shown by the first row in its state after it (and after the row
    # that showed change k-1). Had the watcher folded k into k+1, k's row is the one after: counted slow.
    latencies, lost = [], 0
    by_change: list[list[float]] = [[] for _change in done]
    for per_client in arrivals:
        position = 0
        for change, (started, state) in enumerate(done):
            while position < len(per_client) and (per_client[position][1] != state
                                                  or per_client[position][0] < started):
                position += 1
            if position == len(per_client):
                lost += 1
                continue
            latencies.append((per_client[position][0] - started) * 1000)
            by_change[change].append(latencies[-1])
            position += 1
    if per_change:  # a change every page saw late (a pause of the whole process) stands out from a slow sweep
        for change, (started, _state) in enumerate(done):
            seen = sorted(by_change[change])
            if seen:
                print(f"  change {change:3d} at {started - done[0][0]:6.1f} s: first {seen[0]:6.1f} ms,"
                      f" median {statistics.median(seen):6.1f} ms, last {seen[-1]:6.1f} ms", flush=True)
    return latencies, lost, cpu


def run_setup(setup: str, client_counts: list[int], changes: int, profile_dir: Path | None,
              per_change: bool = False) -> dict[int, tuple[float, float, int, int]]:
    results: dict[int, tuple[float, float, int, int]] = {}
    with tempfile.TemporaryDirectory(prefix=f"live-bench-{setup}-") as tmp:
        var_dir = Path(tmp)
        (var_dir / "static").mkdir()
        env = portal_env(var_dir, VMPORTAL_LOG_LEVEL="WARNING")
        redis = None
        if setup != "memory":
            redis_port = free_port()
            redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", tmp,
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
            wait_for_port(redis_port)
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        session_key = prepare_portal(env)

        def profile(name: str) -> list[str]:
            return ["--profile", str(profile_dir / f"{setup}-{name}.pstats")] if profile_dir else []

        servers: list[Process] = []
        try:
            if setup == "redis-2":  # the watchers apart, two daphne processes
                servers.append(Process([*SERVER, *profile("watch")], env))
                ports = [free_port(), free_port()]
                servers += [Process([*SERVER, "--daphne", str(port), *profile(f"daphne-{n}")], env)
                            for n, port in enumerate(ports)]
            else:
                ports = [free_port()]
                servers.append(Process([*SERVER, "--daphne", str(ports[0]), "--watch", *(["--redis"] if redis else []),
                                        *profile("daphne")], env))
            for server in servers:
                server.expect("ready")
            for port in ports:
                wait_for_port(port)
            for count in client_counts:
                latencies, lost, cpu = measure(env, servers, ports, session_key, count, changes, per_change)
                p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
                results[count] = (p50, p99, len(latencies), lost)
                print(f"{setup:7} {count:6d} clients  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
                      f"  ({len(latencies)} arrivals, {lost} missing)"
                      f"  servers' CPU {cpu * 1e6 / count:6.0f} us per change per page", flush=True)
        finally:
            for server in servers:
                server.stop()
            if redis is not None:
                redis.terminate()
                redis.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    client = sub.add_parser("clients")
    client.add_argument("--ports", required=True)
    client.add_argument("--count", type=int, required=True)
    client.add_argument("--cookie", required=True)
    client.add_argument("--linger", type=float, default=2.0)
    parser.add_argument("--clients", default="1,100,1000", help="comma-separated numbers of open pages")
    parser.add_argument("--changes", type=int, default=30, help="state changes per measurement")
    parser.add_argument("--setups", default="memory,redis,redis-2", help="memory, redis, redis-2 (see above)")
    parser.add_argument("--profile", type=Path, help="a directory for each server process's cProfile statistics")
    parser.add_argument("--per-change", action="store_true", help="each change's first, median and last arrival")
    arguments = parser.parse_args()

    if arguments.role == "clients":
        ports = [int(port) for port in arguments.ports.split(",")]
        asyncio.run(clients(ports, arguments.count, arguments.cookie, arguments.linger))
        return

    setups = arguments.setups.split(",")
    if set(setups) - {"memory"} and shutil.which("redis-server") is None:
        parser.error("redis-server is missing (Debian package redis-server)")
    if arguments.profile:
        arguments.profile.mkdir(parents=True, exist_ok=True)
    counts = [int(count) for count in arguments.clients.split(",")]
    print(f"latency from a libvirt state change to its row on N open list pages ({arguments.changes} changes each)")
    results = {setup: run_setup(setup, counts, arguments.changes, arguments.profile, arguments.per_change)
               for setup in setups}
    print()
    missing = 0
    for setup, by_count in results.items():
        for count, (_p50, p99, _n, lost) in by_count.items():
            missing += lost
            verdict = "" if count != 1000 else ("  (target < 100 ms: met)" if p99 < TARGET_P99_MS
                                                else "  (target < 100 ms: missed)")
            print(f"p99 / 3 s polling interval, {setup}, {count} clients: {p99 / 1000 / POLL_SECONDS:.4f}"
                  f"  ({POLL_SECONDS * 1000 / p99:.0f}x sooner), {lost} missing{verdict}")
    if missing:
        sys.exit(f"{missing} updates never arrived")


if __name__ == "__main__":
    main()
