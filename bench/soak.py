"""The soak: an hour of state changes under open pages and consoles; memory flat, nothing lost, nothing logged.

    .venv/bin/python bench/soak.py [--minutes 60] [--rate 10] [--pages 200] [--consoles 20] [--redis]

One portal as deployed: daphne serving the real ASGI application with the watchers of test:///default in
it (tests/support/changing_watchers.py's server, whose `test` VM is paused and resumed on command), and
`manage.py consoleproxy` with a synthetic display reported as a running VM's VNC display
(bench/console_proxy.py's), both on one database. --redis puts Redis between them as the README's
scale-out does. The `test` VM changes state `--rate` times a second for `--minutes`; a client process holds
`--pages` list pages (/ws/domains/?all) and counts, per page, the state flips it sees and the state it ends
on; `--consoles` consoles echo 64 bytes once a second each.
Reported: every server process's memory sampled every 10 s, and its growth from the end of the warm-up
(the first five minutes, or the first quarter of a shorter run) to the end: judged on its private memory
(USS), what the process itself holds; its PSS is shown too, but moves whenever other processes start or stop
mapping the same libraries (a test run alongside, say); per page, the changes it never
saw that other pages saw, or a last state that is not the VM's (changes faster than the watcher reads are
folded into the next by the watcher, for every page alike: reported, not lost); console echoes that
failed; lines the servers logged at ERROR or with a traceback. It exits non-zero when a process grew by
10 % or more, an update or an echo was lost, or an error was logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.console_proxy import ORIGIN, UUID, Proxied, Tree, display_server, process_tree  # noqa: E402
from bench.live_latency import SERVER, Process  # noqa: E402
from tests.support.changing_watchers import TEST_UUID  # noqa: E402
from tests.support.consoles import ConsoleStack, display_host_uri  # noqa: E402
from tests.support.portal import LiveSocket, free_port, raise_file_limit, wait_for_port  # noqa: E402

PYTHON = sys.executable
SAMPLE_SECONDS = 10.0
WARM_UP_SECONDS = 300.0
GROWTH_LIMIT = 0.10
LINGER_SECONDS = 30.0  # how long the pages may take to show the last change once it is made


# --- The client process: N list pages counting the flips of the `test` VM's state. ---


async def pages(port: int, count: int, session_key: str) -> None:
    raise_file_limit()
    sockets = []
    for start in range(0, count, 50):
        sockets += await asyncio.gather(*(LiveSocket.open(port, "/ws/domains/?all", session_key=session_key)
                                          for _ in range(start, min(count, start + 50))))
    flips = [0] * len(sockets)
    resyncs = [0] * len(sockets)
    last = [""] * len(sockets)
    row = f'<tr id="domain-embedded-{TEST_UUID}"'.encode()

    async def follow(index: int, socket: LiveSocket) -> None:
        shown = b""
        while True:
            payload = await socket.receive_text()
            if b"refetch:#results" in payload:
                resyncs[index] += 1  # a page told to fetch itself again: it would, and count the state it reads
            if row not in payload:
                continue
            state = b"paused" if b'data-state="paused"' in payload else b"running"
            if state != shown:
                flips[index] += shown != b""  # the first row only says where it starts
                shown = state
                last[index] = state.decode()

    tasks = [asyncio.create_task(follow(index, socket)) for index, socket in enumerate(sockets)]
    print("ready", flush=True)
    # "done <the VM's last state>": wait for every page to show it, for up to LINGER_SECONDS.
    final = (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).split()[-1]
    told = time.monotonic()
    while any(state != final for state in last) and time.monotonic() - told < LINGER_SECONDS:
        await asyncio.sleep(0.05)
    caught_up = time.monotonic() - told
    for task in tasks:
        task.cancel()
    print(json.dumps({"flips": flips, "resyncs": resyncs, "last": last, "caught_up": caught_up}), flush=True)


# --- The consoles: an echo a second each, on threads. ---


class Consoles:
    def __init__(self, proxy_port: int, tokens: list[str], session: str) -> None:
        self.clients = [Proxied(proxy_port, token, session) for token in tokens]
        self.echoes = self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._echo, args=(client,), daemon=True) for client in self.clients]
        for thread in self._threads:
            thread.start()

    def _echo(self, client: Proxied) -> None:
        client.send(b"E")
        payload = b"soak" * 16
        while not self._stop.wait(1.0):
            try:
                client.send(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = client.chunk()
                    if not chunk:
                        raise ConnectionError("closed")
                    got += chunk
                self.echoes += got == payload
                self.failures += got != payload
            except OSError:
                self.failures += 1
                return

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for client in self.clients:
            client.close()


# --- Memory. ---


def sample(pids: dict[str, int]) -> dict[str, Tree]:
    return {name: process_tree(pid) for name, pid in pids.items()}


def growth(samples: list[tuple[float, dict[str, Tree]]], warm_up: float,
           measure: str) -> dict[str, tuple[int, int, float]]:
    """Per process: its memory by `measure` (pss or uss) at the end of the warm-up, at the end, and the growth."""
    started = samples[0][0]
    base = next(values for at, values in samples if at - started >= warm_up)
    last = samples[-1][1]
    return {name: (getattr(base[name], measure), getattr(last[name], measure),
                   getattr(last[name], measure) / getattr(base[name], measure) - 1) for name in base}


def errors_in(logs: list[Path]) -> list[str]:
    lines = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if " ERROR " in line or line.startswith(("ERROR", "Traceback")) or "Exception inside application" in line:
                lines.append(f"{log.name}: {line}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=10.0, help="state changes a second")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument("--redis", action="store_true", help="Redis between the watchers and the pages")
    parser.add_argument("--serve-pages", nargs=3, metavar=("PORT", "COUNT", "SESSION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pages:
        port, count, session = args.serve_pages
        asyncio.run(pages(int(port), int(count), session))
        return 0

    seconds = args.minutes * 60
    warm_up = min(WARM_UP_SECONDS, seconds / 4)
    changes = int(seconds * args.rate)
    display, display_port = display_server()
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    stack = ConsoleStack(work / "var", settings={"VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0",
                                                 "VMPORTAL_CONSOLE_OPEN_LIMIT": "0",
                                                 "VMPORTAL_LOG_LEVEL": "WARNING"})
    stack.var_dir.mkdir()
    (stack.var_dir / "static").mkdir()
    redis = None
    if args.redis:
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--dir",
                                  str(work), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_for_port(redis_port)
        stack.settings["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    stack.setup({"embedded": "test:///default",
                 "bench": display_host_uri(work / "inventory.xml", {"bench-display": (UUID, display_port)})})
    stack.user("soak", role="operator")
    session = stack.login("soak")
    proxy_port = stack.proxy()
    proxy_pid = stack.processes[-1].pid
    daphne_port = free_port()
    logs = [stack.var_dir / "consoleproxy.log", work / "daphne.log"]
    with logs[1].open("w") as daphne_log:
        daphne = Process([*SERVER, "--daphne", str(daphne_port), "--watch", *(["--redis"] if args.redis else [])],
                         stack.env, stderr=daphne_log)
    client: Process | None = None
    consoles: Consoles | None = None
    try:
        daphne.expect("ready")
        wait_for_port(daphne_port)
        client = Process([PYTHON, __file__, "--serve-pages", str(daphne_port), str(args.pages), session], stack.env)
        client.expect("ready", timeout=600)
        tokens = list(stack.shell(
            "from consoles import services\nfrom accounts.models import User\n"
            "user = User.objects.get(username='soak')\nresult = []\n"
            f"for _ in range({args.consoles}):\n"
            "    result += services.console_tickets_issue(actor=user, host_name='bench',"
            f" uuid={UUID!r}, origin={ORIGIN!r}).tokens\n"))
        consoles = Consoles(proxy_port, tokens, session)
        pids = {"daphne": daphne.popen.pid, "consoleproxy": proxy_pid}
        print(f"soak: {args.minutes:g} min, {args.rate:g} changes/s ({changes}), {args.pages} pages, "
              f"{args.consoles} consoles, {'Redis' if args.redis else 'in-memory layer'}", flush=True)
        time.sleep(1.5)  # the watcher's first listing reaches the pages first
        daphne.say(f"go {changes} {1 / args.rate}")
        started = time.monotonic()
        samples = [(started, sample(pids))]
        while time.monotonic() - started < seconds:
            time.sleep(SAMPLE_SECONDS)
            samples.append((time.monotonic(), sample(pids)))
            done = samples[-1][0] - started
            print(f"  {done / 60:5.1f} min  " + "  ".join(
                f"{name} USS {tree.uss / 2**20:6.1f} MiB PSS {tree.pss / 2**20:6.1f} MiB"
                for name, tree in samples[-1][1].items()), flush=True)
        made_changes = json.loads(daphne.expect("{", timeout=seconds + 120))["changes"]
        made, final = len(made_changes), made_changes[-1][1]
        client.say(f"done {final}")
        seen = json.loads(client.expect("{", timeout=120))
    finally:
        if consoles is not None:
            consoles.stop()
        for process in (client, daphne):
            if process is not None:
                process.stop()
        stack.stop()
        display.terminate()
        if redis is not None:
            redis.terminate()
            redis.wait()

    # Every page follows the same stream of the watcher's news: a page that saw fewer flips than the most any
    # page saw, or ends on another state than the VM's, lost an update (unless it was told to resync).
    shown_most = max(seen["flips"], default=0)
    missing = [shown_most - flips if resyncs == 0 else 0
               for flips, resyncs in zip(seen["flips"], seen["resyncs"], strict=True)]
    wrong_end = sum(state != final for state in seen["last"])
    logged = errors_in(logs)
    grown = growth(samples, warm_up, "uss")
    for measure in ("pss", "uss"):
        for name, (base, last, rate) in growth(samples, warm_up, measure).items():
            print(f"memory {name:13} {measure.upper()} {base / 2**20:7.1f} MiB after the warm-up -> "
                  f"{last / 2**20:7.1f} MiB at the end: {rate * 100:+.1f} %")
    print(f"changes made: {made}; shown by the watcher: {shown_most} (folded into a later one: {made - shown_most})")
    print(f"pages missing updates: {sum(1 for m in missing if m)} of {len(missing)} (most missed by one page: "
          f"{max(missing, default=0)}); pages ending on another state than the VM's: {wrong_end}; "
          f"resyncs told: {sum(seen['resyncs'])}; every page showed the last change "
          f"{seen['caught_up']:.2f} s after it was made")
    answered, failed = (consoles.echoes, consoles.failures) if consoles is not None else (0, 0)
    print(f"console echoes: {answered} answered, {failed} failed")
    print(f"errors logged: {len(logged)}")
    for line in logged[:20]:
        print("  " + line)
    worst = max(rate for _base, _last, rate in grown.values())
    print(f"worst memory growth (USS): {worst * 100:+.1f} % (limit {GROWTH_LIMIT * 100:.0f} %)")
    ok = worst < GROWTH_LIMIT and not any(missing) and not wrong_end and not logged and answered and not failed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
