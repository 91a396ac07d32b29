"""The VM list at scale: 10,000 domains on 20 real libvirtd lab hosts behind slow links, through daphne.

    VMPORTAL_LAB_INSTANCE=6 .venv/bin/python bench/list_scale.py [--hosts 20] [--domains 10000]
        [--delay-ms 10] [--repeat 30] [--restarts 3] [--naive-runs 1] [--reuse] [--keep]

1. The lab: `lab.up(hosts, demo_inventory=False)` on the lab instance given by VMPORTAL_LAB_INSTANCE
   (never 0, the usual lab: the bench takes its instance down at the end), or with --reuse the
   hosts already running there. Then `--domains` persistent, shut-off domains spread evenly over the
   hosts (`scale-<host>-<n>`; a third with a title, a fifth autostarted, a tenth with a snapshot's
   metadata; a disk that does not exist, so that no autostart ever boots one), defined through each
   host's unix socket, the hosts in parallel. Domains already there from an earlier --keep are kept.
2. Each host's link is slowed by `--delay-ms` each way (lab.set_link: every chunk crossing the link
   waits that long, in both directions), checked by timing one libvirt call over SSH and TLS.
3. The portal: daphne serving the real application from a throw-away var dir (its own SQLite
   database), an admin, the hosts registered by `manage.py lab up --no-demo` with their SSH and TLS
   URIs. It waits until the JSON list counts every domain, checks the filters answer what was
   defined, then times `--repeat` rounds of the warm list pages (one request of each per round),
   reads daphne's memory, and restarts daphne `--restarts` times, timing from the moment it accepts
   connections to its first complete list.
4. The per-row path of older panels (bench/list_domains.py's naive path) over the same slowed links,
   from this process, `--naive-runs` times.
5. Unless --keep, it undefines its domains and takes the lab instance down.

A page the server does not understand (400: the list's paging and sorting parameters are newer than
some servers) is reported and left out. The last line is 100 ms divided by the worst p95 of the warm
list pages: at least 1 when every warm page meets the target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import libvirt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lab  # noqa: E402
from bench.list_domains import naive_path  # noqa: E402
from bench.stats import percentile  # noqa: E402
from domains.virt import pool  # noqa: E402
from lab.paths import INSTANCE  # noqa: E402
from tests.support.consoles import ConsoleStack  # noqa: E402

PREFIX = "scale-"
# Every domain's disk, never made: a daemon starting with the domains still defined (after --keep) tries to
# autostart a fifth of them, and fails at once on the disk instead of booting 2,000 QEMUs.
ABSENT_DISK = "/nonexistent/vmportal-list-scale.qcow2"
TARGET_MS = 100.0
ADMIN = "admin"  # manage.py bootstrap's


# --- the domains --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleDomain:
    name: str
    title: str
    memory_mib: int
    vcpus: int
    autostart: bool
    snapshot: bool

    def xml(self) -> str:
        title = f"<title>{self.title}</title>" if self.title else ""
        return (f"<domain type='qemu'><name>{self.name}</name>{title}<memory unit='MiB'>{self.memory_mib}</memory>"
                f"<vcpu>{self.vcpus}</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
                f"<disk type='file' device='disk'><source file='{ABSENT_DISK}'/><target dev='vda' bus='virtio'/>"
                f"</disk></devices></domain>")


def scale_domains(host_names: Sequence[str], domains: int) -> dict[str, list[ScaleDomain]]:
    """The domains of each host: `domains` in all, the hosts differing by at most one."""
    plan: dict[str, list[ScaleDomain]] = {}
    for position, host in enumerate(host_names):
        count = len(range(position, domains, len(host_names)))
        plan[host] = [ScaleDomain(name=f"{PREFIX}{host}-{number:05d}",
                                  title=f"Scale VM {number} of {host}" if number % 3 == 0 else "",
                                  memory_mib=128 * (1 + number % 8), vcpus=1 + number % 4,
                                  autostart=number % 5 == 0, snapshot=number % 10 == 0)
                      for number in range(count)]
    return plan


def _snapshot_xml(domain_xml: str) -> str:
    """A snapshot's metadata, redefined: no disk is touched, so it costs what a define does."""
    return (f"<domainsnapshot><name>before-upgrade</name><state>shutoff</state>"
            f"<creationTime>1700000000</creationTime>{domain_xml}</domainsnapshot>")


def sync_host(socket_uri: str, wanted: Sequence[ScaleDomain]) -> int:
    """Make the host's scale domains exactly `wanted` (none: undefine them all); return the domains it has."""
    conn = libvirt.open(socket_uri)
    try:
        wanted_names = {domain.name for domain in wanted}
        present = set()
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT):
            name = dom.name()
            if name.startswith(PREFIX) and name not in wanted_names:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            else:
                present.add(name)
        for domain in wanted:
            if domain.name in present:
                continue
            dom = conn.defineXML(domain.xml())
            if domain.autostart:
                dom.setAutostart(1)
            if domain.snapshot:
                dom.snapshotCreateXML(_snapshot_xml(dom.XMLDesc(0)), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        return len(conn.listAllDomains(0))
    finally:
        conn.close()


def sync_lab(socket_uris: dict[str, str], plan: dict[str, list[ScaleDomain]]) -> int:
    """sync_host on every host (name -> unix socket URI) at once; the domains the hosts have in all."""
    with ThreadPoolExecutor(max_workers=len(socket_uris)) as executor:
        return sum(executor.map(lambda name: sync_host(socket_uris[name], plan.get(name, [])), socket_uris))


def undefine_all() -> None:
    """Undefine the scale domains of every running host of the instance, whatever the run got to."""
    running = {status.name: status.uri for status in lab.status() if status.running}
    if running:
        sync_lab(running, {})


# --- measuring ----------------------------------------------------------------------------------

def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    """Resident and proportional set sizes of the processes together, in KiB (smaps_rollup)."""
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            field, _, value = line.partition(":")
            if field == "Rss":
                rss += int(value.split()[0])
            elif field == "Pss":
                pss += int(value.split()[0])
    return rss, pss


def libvirtd_memory() -> str:
    pids = [status.pids["libvirtd"] for status in lab.status() if "libvirtd" in status.pids]
    rss, pss = memory_kib(pids)
    return f"{len(pids)} libvirtd: RSS {rss / 1024:.0f} MiB, PSS {pss / 1024:.0f} MiB in all"


def call_round_trip_ms(uri: str, calls: int = 10) -> float:
    """The fastest of `calls` libvirt calls on a fresh connection (a slowed link delays new connections)."""
    conn = libvirt.open(uri)
    try:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            conn.getHostname()
            times.append(time.perf_counter() - started)
        return min(times) * 1000
    finally:
        conn.close()


@dataclass(frozen=True)
class Portal:
    """The logged-in browser's side of the list, one connection a request as a page load opens."""

    port: int
    session_key: str

    def get(self, path: str) -> tuple[int, bytes, float]:
        """Status, body and seconds from sending the request to the body's last byte."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900)
        try:
            started = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": f"sessionid={self.session_key}"})
            response = conn.getresponse()
            body = response.read()
            return response.status, body, time.perf_counter() - started
        finally:
            conn.close()

    def listing(self, path: str) -> dict[str, Any]:
        status, body, _ = self.get(path)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
        payload: dict[str, Any] = json.loads(body)
        return payload


def listed_count(payload: dict[str, Any]) -> int:
    """The total a JSON list reports; a server without paging lists every row."""
    return int(payload.get("count", len(payload["domains"])))


def wait_until_complete(portal: Portal, expected: int, timeout: float) -> tuple[float, dict[str, Any]]:
    """Seconds until the JSON list counts `expected` domains with every host reachable, and that list."""
    started = time.perf_counter()
    while True:
        payload = portal.listing("/domains/?all&format=json")
        if listed_count(payload) == expected and not payload["unreachable_hosts"]:
            return time.perf_counter() - started, payload
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"after {timeout:.0f} s the list counts {listed_count(payload)} of {expected} domains; "
                             f"unreachable: {payload['unreachable_hosts']}")
        time.sleep(0.05)


def warm_pages(text: str) -> dict[str, str]:
    return {
        "HTML first page": "/domains/?all",
        "HTML sorted": "/domains/?all&sort=-memory&page=3",
        "HTML text filter": f"/domains/?all&q={quote(text)}",
        "HTML virsh option": "/domains/?all&autostart",
        "JSON first page": "/domains/?all&format=json",
    }


def understood_pages(portal: Portal, pages: dict[str, str]) -> dict[str, str]:
    """The pages this server answers; those it refuses (400) are reported and left out."""
    kept = {}
    for label, path in pages.items():
        status, body, _ = portal.get(path)
        if status == 400:
            print(f"  {label} ({path}): refused by this server (400), left out")
        elif status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
        else:
            kept[label] = path
    return kept


def check_answers(portal: Portal, pages: dict[str, str], plan: dict[str, list[ScaleDomain]], text: str) -> None:
    """The filters list what was defined, and the sorted page is sorted (each checked on its JSON twin)."""
    defined = [domain for domains in plan.values() for domain in domains]
    expected = {
        "HTML text filter": sum(text.casefold() in f"{d.name}\n{d.title}".casefold() for d in defined),
        "HTML virsh option": sum(d.autostart for d in defined),
    }
    for label, count in expected.items():
        if label in pages:
            got = listed_count(portal.listing(pages[label] + "&format=json"))
            assert got == count, f"{label}: the list counts {got}, {count} were defined"
            print(f"  {label}: {got} domains, as defined")
    if "HTML sorted" in pages:
        payload = portal.listing(pages["HTML sorted"] + "&format=json")
        memory = [row["memory_kib"] for row in payload["domains"]]
        assert memory and memory == sorted(memory, reverse=True), "the sorted page is not sorted by memory"
        assert payload.get("page") == 3, f"asked for page 3, got {payload.get('page')}"
        print(f"  HTML sorted: page 3 has {len(memory)} rows, memory descending")


def time_pages(portal: Portal, pages: dict[str, str], repeat: int) -> dict[str, list[float]]:
    """Milliseconds of each page, `repeat` rounds of one request each, so drift touches every page alike."""
    times: dict[str, list[float]] = {label: [] for label in pages}
    for _ in range(repeat):
        for label, path in pages.items():
            status, body, seconds = portal.get(path)
            if status != 200:
                raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
            times[label].append(seconds * 1000)
    return times


def summary(values_ms: Sequence[float]) -> str:
    return (f"p50 {statistics.median(values_ms):9.1f} ms  p95 {percentile(values_ms, 0.95):9.1f} ms"
            f"  (n={len(values_ms)}, max {max(values_ms):.1f})")


def headroom_text(worst_p95_ms: float) -> str:
    """100 ms over the worst p95: one decimal, or two significant digits below 0.1 (a slow server's figure)."""
    ratio = TARGET_MS / worst_p95_ms
    return f"{ratio:.1f}" if ratio >= 0.1 else f"{ratio:.2g}"


@contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)


# --- the run ------------------------------------------------------------------------------------

def bring_up_lab(count: int, reuse: bool) -> list[lab.LabHost]:
    if not reuse:
        with timed(f"lab up, {count} hosts"):
            return lab.up(count, demo_inventory=False, network=True)
    running = {status.name for status in lab.status() if status.running}
    missing = [f"lab{number}" for number in range(1, count + 1) if f"lab{number}" not in running]
    if missing:
        raise SystemExit(f"--reuse: not running on lab instance {INSTANCE}: {', '.join(missing)}")
    return lab.up(count, demo_inventory=False, network=True)  # keeps them running; returns their URIs


def slow_links(hosts: Sequence[lab.LabHost], delay_ms: int) -> None:
    probes = list(hosts[:2])  # lab1 is reached over SSH, lab2 over TLS
    for host in probes:
        lab.set_link(host.name)  # normal, for the figure before: a reused lab's links are slow already
    before = [call_round_trip_ms(host.uri) for host in probes]
    for host in hosts:
        lab.set_link(host.name, delay_ms=delay_ms)
    after = [call_round_trip_ms(host.uri) for host in probes]
    for host, fast, slow in zip(probes, before, after, strict=True):
        transport = host.uri.split(":", 1)[0]
        print(f"one libvirt call to {host.name} ({transport}): {fast:.1f} ms, {slow:.1f} ms with the link slowed "
              f"({delay_ms} ms each way)")


def start_portal(stack: ConsoleStack, count: int) -> Portal:
    stack.manage("migrate", "--noinput", "-v", "0")
    stack.manage("bootstrap", "--no-default-host")
    stack.manage("lab", "up", "--hosts", str(count), "--no-demo")  # registers the hosts' SSH and TLS URIs
    session_key = stack.login(ADMIN)
    return Portal(stack.daphne(), session_key)


def daphne_pid(stack: ConsoleStack) -> int:
    return stack.processes[-1].pid


def cold_starts(stack: ConsoleStack, portal: Portal, expected: int, restarts: int, timeout: float) -> list[float]:
    """Milliseconds from daphne accepting connections (again) to its first complete list."""
    times = []
    for _ in range(restarts):
        stack.stop()
        stack.daphne(portal.port)
        seconds, _ = wait_until_complete(portal, expected, timeout)
        times.append(seconds * 1000)
    return times


def run(args: argparse.Namespace, finish: Callable[[str], None]) -> None:
    hosts = bring_up_lab(args.hosts, args.reuse)
    print(f"idle lab: {libvirtd_memory()}")
    plan = scale_domains([host.name for host in hosts], args.domains)
    with timed(f"{args.domains} domains defined (or found) over {len(hosts)} hosts through their unix sockets"):
        expected = sync_lab({host.name: host.socket_uri for host in hosts}, plan)
    print(f"the hosts have {expected} domains; lab with them: {libvirtd_memory()}", flush=True)
    slow_links(hosts, args.delay_ms)

    middle = plan[hosts[len(hosts) // 2].name]
    text = middle[min(len(middle) - 1, 40)].name[:-1]  # ten names share it, on one host
    with tempfile.TemporaryDirectory(prefix="vmportal-list-scale-") as directory:
        var_dir = Path(directory)
        (var_dir / "static").mkdir()
        settings = {"VMPORTAL_LAB_INSTANCE": str(INSTANCE), "VMPORTAL_LOG_LEVEL": "WARNING"}
        if args.host_deadline:
            settings["VMPORTAL_HOST_DEADLINE"] = str(args.host_deadline)
        stack = ConsoleStack(var_dir, settings)
        try:
            portal = start_portal(stack, len(hosts))
            seconds, _ = wait_until_complete(portal, expected, args.timeout)
            print(f"first start: the list is complete {seconds:.1f} s after daphne accepts connections", flush=True)
            pages = understood_pages(portal, warm_pages(text))
            check_answers(portal, pages, plan, text)
            times = time_pages(portal, pages, args.repeat)
            print(f"warm list pages, {args.repeat} rounds:")
            for label, values in times.items():
                print(f"  {label:18} {summary(values)}   {pages[label]}")
            rss, pss = memory_kib([daphne_pid(stack)])
            print(f"daphne after warm-up: RSS {rss / 1024:.0f} MiB, PSS {pss / 1024:.0f} MiB", flush=True)
            if args.restarts:
                cold = cold_starts(stack, portal, expected, args.restarts, args.timeout)
                print(f"cold first complete list after a restart: {summary(cold)}", flush=True)
        finally:
            stack.stop()

    uris = [host.uri for host in hosts]
    for number in range(args.naive_runs):
        started = time.perf_counter()
        rows = naive_path(uris, args.timeout)
        print(f"per-row path of older panels (run {number + 1}): {len(rows)} domains in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    pool.close_all()
    worst = max(percentile(values, 0.95) for values in times.values())
    finish(f"headroom at {args.domains} VMs: {headroom_text(worst)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20, help="lab hosts (default 20)")
    parser.add_argument("--domains", type=int, default=10000, help="domains in all (default 10000)")
    parser.add_argument("--delay-ms", type=int, default=10, help="delay of each host's link, each way (default 10)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests of each warm page (default 30)")
    parser.add_argument("--restarts", type=int, default=3, help="daphne restarts timed (default 3)")
    parser.add_argument("--naive-runs", type=int, default=1, help="runs of the per-row path (default 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for a complete list")
    parser.add_argument("--host-deadline", type=float, default=0,
                        help="the portal's VMPORTAL_HOST_DEADLINE (default: the portal's own)")
    parser.add_argument("--reuse", action="store_true", help="use the lab hosts already running on the instance")
    parser.add_argument("--keep", action="store_true", help="leave the lab up and its domains defined")
    args = parser.parse_args(argv)
    if INSTANCE == 0:
        parser.error("run it on a lab instance of its own (VMPORTAL_LAB_INSTANCE=N, 1-254): it takes its lab down")
    if min(args.hosts, args.domains, args.repeat) < 1 or min(args.restarts, args.naive_runs) < 0:
        parser.error("--hosts, --domains and --repeat must be at least 1")
    ready, reason = lab.available()
    if not ready:
        raise SystemExit(f"the lab cannot run here: {reason}")
    libvirt.registerErrorHandler(lambda _ctx, _error: None, None)  # errors are raised; no copy on stderr
    # A run stopped with SIGTERM still cleans up: a lab left behind would autostart nothing but hold 20 daemons.
    signal.signal(signal.SIGTERM, lambda _signal, _frame: sys.exit(143))

    last_line: list[str] = []
    try:
        run(args, last_line.append)
    finally:
        if not args.keep:
            with timed("clean-up: domains undefined, lab down"):
                undefine_all()
                lab.down()
    print(*last_line, sep="\n")


if __name__ == "__main__":
    main()
