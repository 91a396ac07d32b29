"""The dashboard's list path against a naive per-row path, on the same domains in the same run.

    .venv/bin/python bench/list_domains.py [--domains 1000] [--hosts 2] [--repeat 5]
    .venv/bin/python bench/list_domains.py --uri qemu+ssh://lab1/system --uri ... [--define-on-uri]

By default it writes one libvirt test-driver inventory per host (the domains split evenly, in
mixed states) into a temporary directory and opens them as test:///<file>. With --uri it lists
the domains the given hosts already have; --define-on-uri first defines --domains inactive
domains spread over those URIs and undefines them afterwards.

dashboard: domains.virt.fan_out runs list_domains(uri, ("all",)) on every host in parallel
           (listAllDomains + a few flag-only listings + domainListGetStats per host).
naive:     the same fan-out, but per host listAllDomains(0) and then, per VM, the calls older
           panels make: lookupByUUIDString, info(), state(), XMLDesc() parsed for title, vCPUs
           and memory, isPersistent(), autostart(), hasManagedSaveImage(), snapshotNum().
Both go through the same pooled connection per host, so only the calls differ. Each path is
warmed up once, then the runs alternate; the medians are printed and the ratio comes last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from domains.virt import DomainRecord, list_domains, pool  # noqa: E402
from domains.virt.inventory import HostFanOut  # noqa: E402
from domains.virt.inventory import fan_out as dashboard_fan_out  # noqa: E402

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
BENCH_PREFIX = "vmportal-bench"


@dataclass(frozen=True, slots=True)
class Row:
    """The columns both paths fill, for checking they listed the same thing."""

    uuid: str
    name: str
    title: str
    state: int
    persistent: bool
    autostart: bool
    managed_save: bool
    snapshots: int
    vcpus: int
    memory_kib: int


def row_from_record(record: DomainRecord) -> Row:
    return Row(record.uuid, record.name, record.title, int(record.state), record.persistent, record.autostart,
               record.managed_save, record.snapshots, record.vcpus, record.memory_kib)


# --- the inventory -----------------------------------------------------------------------------

_OTHER_STATES = (2, 4, 6, 7)  # blocked, in shutdown, crashed, pmsuspended


def _test_domain_xml(host: int, index: int) -> str:
    """Half running, a tenth paused, a tenth in other states, the rest shut off (a third of those saved)."""
    name = f"{BENCH_PREFIX}-h{host}-{index:04d}"
    kind = index % 10
    runstate = 1 if kind < 5 else 3 if kind == 5 else _OTHER_STATES[index // 10 % 4] if kind == 6 else 5
    extra = []
    if runstate != 5 and index % 20 == 0:
        extra.append("<test:transient/>")
    if kind == 7:
        extra.append("<test:hasmanagedsave/>")
    domain_uuid = f"{host:08x}-0000-4000-8000-{index:012x}"
    if index % 4 == 0:
        extra.append(
            f"<test:domainsnapshot><name>{name}-s1</name><state>running</state>"
            f"<creationTime>1700000000</creationTime><active>1</active>"
            f"<domain type='test'><name>{name}</name><uuid>{domain_uuid}</uuid>"
            f"<memory unit='MiB'>256</memory><os><type>hvm</type></os></domain></test:domainsnapshot>"
        )
    return (
        f"<domain type='test'><name>{name}</name><uuid>{domain_uuid}</uuid>"
        f"<title>{escape(f'Benchmark VM {index} on host {host}')}</title>"
        f"<memory unit='MiB'>{256 * (1 + index % 8)}</memory><vcpu>{1 + index % 4}</vcpu>"
        f"<os><type>hvm</type></os><test:runstate>{runstate}</test:runstate>{''.join(extra)}</domain>"
    )


def write_test_inventories(directory: Path, domains: int, hosts: int) -> list[str]:
    uris = []
    for host in range(hosts):
        indexes = range(host, domains, hosts)  # round robin: the hosts differ by at most one domain
        path = directory / f"host{host}.xml"
        path.write_text(
            f"<node xmlns:test='{TEST_NS}'>\n"
            + "\n".join(_test_domain_xml(host, index) for index in indexes)
            + "\n</node>\n"
        )
        uris.append(f"test://{path}")
    return uris


def mark_autostart(uris: Sequence[str]) -> None:
    """The test driver's XML cannot say autostart; mark a fifth of the persistent domains on the pooled connection."""
    for uri in uris:
        conn = pool.get(uri).conn
        for number, dom in enumerate(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)):
            if number % 5 == 0:
                dom.setAutostart(1)


def _defined_domain_xml(domain_type: str, name: str, index: int) -> str:
    return (
        f"<domain type='{domain_type}'><name>{name}</name><uuid>{uuid.uuid4()}</uuid>"
        f"<title>Benchmark VM {index}</title><memory unit='MiB'>{128 * (1 + index % 4)}</memory>"
        f"<vcpu>{1 + index % 2}</vcpu><os><type>hvm</type></os></domain>"
    )


@contextmanager
def defined_domains(uris: Sequence[str], domains: int) -> Iterator[None]:
    """Define `domains` inactive domains spread over `uris`, and undefine them whatever happens."""
    token = uuid.uuid4().hex[:8]
    defined: list[tuple[str, str]] = []
    try:
        for index in range(domains):
            uri = uris[index % len(uris)]
            conn = pool.get(uri).conn
            domain_type = {"QEMU": "qemu", "Test": "test"}.get(conn.getType(), conn.getType().lower())
            name = f"{BENCH_PREFIX}-{token}-{index:04d}"
            conn.defineXML(_defined_domain_xml(domain_type, name, index))
            defined.append((uri, name))
        yield
    finally:
        failures: list[str] = []
        for uri, name in defined:  # never started, so no managed save, snapshot or NVRAM to remove
            try:
                pool.get(uri).conn.lookupByName(name).undefine()
            except libvirt.libvirtError as error:
                failures.append(f"{name} on {uri}: {error}")
        if failures:
            print(f"could not undefine {len(failures)} domain(s), first: {failures[0]}", file=sys.stderr)


# --- the two paths -----------------------------------------------------------------------------

def dashboard_path(uris: Sequence[str], deadline: float) -> list[Row]:
    results = dashboard_fan_out.run({uri: uri for uri in uris}, lambda uri: list_domains(uri, ("all",)), deadline)
    rows: list[Row] = []
    for uri, result in results.items():
        if isinstance(result, Exception):
            raise SystemExit(f"{uri}: {result} ({result.detail})")
        rows.extend(row_from_record(record) for record in result)
    return rows


def naive_host(uri: str) -> list[Row]:
    conn = pool.get(uri).conn
    rows = []
    for listed in conn.listAllDomains(0):
        dom = conn.lookupByUUIDString(listed.UUIDString())
        _state, _max_kib, _memory_kib, _vcpus, _cpu_time = dom.info()
        state, _reason = dom.state()
        # The XML is libvirt's own output for a domain on a host we administer.
        root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314
        vcpu = root.find("vcpu")
        rows.append(Row(
            uuid=dom.UUIDString(),
            name=dom.name(),
            title=root.findtext("title") or "",
            state=state,
            persistent=bool(dom.isPersistent()),
            autostart=bool(dom.autostart()),
            managed_save=bool(dom.hasManagedSaveImage(0)),
            snapshots=dom.snapshotNum(0),
            vcpus=int(vcpu.get("current", vcpu.text or 0)) if vcpu is not None else 0,
            memory_kib=int(root.findtext("currentMemory") or root.findtext("memory") or 0),
        ))
    return rows


_naive_fan_out = HostFanOut()


def naive_path(uris: Sequence[str], deadline: float) -> list[Row]:
    results = _naive_fan_out.run({uri: uri for uri in uris}, naive_host, deadline)
    rows: list[Row] = []
    for uri, result in results.items():
        if isinstance(result, Exception):
            raise SystemExit(f"{uri}: {result}")
        rows.extend(result)
    return rows


def timed(path: Callable[[Sequence[str], float], list[Row]], uris: Sequence[str], deadline: float
          ) -> tuple[float, list[Row]]:
    started = time.perf_counter()
    rows = path(uris, deadline)
    return time.perf_counter() - started, rows


def run(uris: Sequence[str], repeat: int, deadline: float) -> None:
    _, dashboard_rows = timed(dashboard_path, uris, deadline)  # warm-up, and the rows to compare
    _, naive_rows = timed(naive_path, uris, deadline)
    dashboard_uuids = {row.uuid for row in dashboard_rows}
    naive_uuids = {row.uuid for row in naive_rows}
    assert len(dashboard_uuids) == len(dashboard_rows), "the dashboard listed a domain twice"
    assert dashboard_uuids == naive_uuids, (
        f"the paths listed different domains: {len(dashboard_uuids - naive_uuids)} only by the dashboard, "
        f"{len(naive_uuids - dashboard_uuids)} only by the naive path"
    )
    naive_set = set(naive_rows)
    differing = sorted(set(dashboard_rows) ^ naive_set, key=lambda row: (row.uuid, row in naive_set))
    print(f"domains: {len(dashboard_rows)} on {len(uris)} host(s); same UUIDs on both paths; "
          f"rows whose columns differ: {len({row.uuid for row in differing})}")
    for row in differing[:6]:
        print(f"  {'naive    ' if row in naive_set else 'dashboard'} {row}")

    dashboard_times: list[float] = []
    naive_times: list[float] = []
    for _ in range(repeat):
        dashboard_times.append(timed(dashboard_path, uris, deadline)[0])
        naive_times.append(timed(naive_path, uris, deadline)[0])
    dashboard_median = statistics.median(dashboard_times)
    naive_median = statistics.median(naive_times)
    print(f"dashboard list path: median {dashboard_median:.4f} s over {repeat} runs "
          f"(min {min(dashboard_times):.4f}, max {max(dashboard_times):.4f})")
    print(f"naive per-row path:  median {naive_median:.4f} s over {repeat} runs "
          f"(min {min(naive_times):.4f}, max {max(naive_times):.4f})")
    print(f"ratio naive/dashboard: {naive_median / dashboard_median:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=1000, help="domains in all (default 1000)")
    parser.add_argument("--hosts", type=int, default=2, help="generated test-driver hosts (default 2)")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs of each path (default 9)")
    parser.add_argument("--deadline", type=float, default=600.0, help="per-host deadline in seconds")
    parser.add_argument("--uri", action="append", default=[], help="list these libvirt URIs instead")
    parser.add_argument("--define-on-uri", action="store_true",
                        help="with --uri: define --domains inactive domains there first, undefine them after")
    args = parser.parse_args(argv)
    if args.define_on_uri and not args.uri:
        parser.error("--define-on-uri needs --uri")
    if args.domains < 1 or args.hosts < 1 or args.repeat < 1:
        parser.error("--domains, --hosts and --repeat must be at least 1")
    try:
        if not args.uri:
            with tempfile.TemporaryDirectory(prefix="vmportal-bench-") as directory:
                uris = write_test_inventories(Path(directory), args.domains, args.hosts)
                print(f"hosts: {len(uris)} generated libvirt test-driver inventories in {directory}")
                mark_autostart(uris)
                run(uris, args.repeat, args.deadline)
        elif args.define_on_uri:
            print(f"hosts: {', '.join(args.uri)}; defining {args.domains} inactive domains there")
            with defined_domains(args.uri, args.domains):
                run(args.uri, args.repeat, args.deadline)
        else:
            print(f"hosts: {', '.join(args.uri)}; listing the domains they have")
            run(args.uri, args.repeat, args.deadline)
    finally:
        pool.close_all()


if __name__ == "__main__":
    main()
