"""Usage collection's cost and size (issue 14), each against a baseline measured in the same run.

    VMPORTAL_LAB_INSTANCE=7 .venv/bin/python bench/metrics.py [--domains 1000,10000] [--samples 5]
                                                              [--history-vms 100] [--requests 50] [--keep]

1. Collection, per host. One real libvirtd lab host on the lab network (lab instance VMPORTAL_LAB_INSTANCE,
   never 0, the usual lab: the bench takes its instance down at the end unless --keep), its link slowed by
   --delay-ms each way, holding N shut-off domains (bench/list_scale.py's), for each N of --domains. Over its
   unix socket, then over its remote URI (SSH) through the slowed link, timed `--samples` times each: the
   bulk sample the watchers take (`virt.usage.sample`: one getAllDomainStats, plus the host's CPU and
   memory), then the collector's arithmetic and its store into SQLite (history points and the host's
   latest sample). Printed: the time per sample and its share of the 10 s interval. Baseline: the per-VM
   path of older panels on the same host and connection (the same figures asked one VM at a time, a round
   trip each, as WebVirtCloud and cockpit read each VM's; timed on --per-vm-limit VMs and scaled to all),
   and the bulk path's speed-up over it. These domains are shut off (the lab
   cannot run thousands of guests): libvirt answers from their definitions, where a running guest's
   counters come from its QEMU monitor, which both paths ask alike; what grows with the number of VMs is
   the round trips, which is what the ratio compares.
2. History size. A simulated day of 10 s samples of --history-vms VMs through the same Collector and store
   (one SQLite database), pruned as the supervisor prunes: rows written per VM per day, rows kept per VM,
   and bytes per kept row on disk (the database's pages after VACUUM, per row). Then a month of 30-minute
   points is added, as a month of running would leave, for every VM: at most 3,240 rows per VM.
3. Chart data. The VM page's JSON (GET /domains/<host>/<uuid>/usage/?span=...) for each span, with that
   full history kept for every VM, through Django's test client as an admin: p50 and p95 per span.
   Baseline: the 100 ms an interactive page has; the last line is that divided by the worst p95.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

INSTANCE = os.environ.get("VMPORTAL_LAB_INSTANCE", "")
INTERVAL = 10.0
TARGET_MS = 100.0
SPANS = ("hour", "day", "week", "month")


def setup_django(var_dir: Path) -> None:
    from tests.support.portal import portal_env

    os.environ.update(portal_env(var_dir, VMPORTAL_LOG_LEVEL="WARNING"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def percentile(values: Sequence[float], fraction: float) -> float:
    from bench.stats import percentile as measured

    return measured(list(values), fraction)


def timed_samples(conn: Any, record_id: int, samples: int) -> tuple[float, float]:
    """Median seconds of a bulk sample, and of the collector's arithmetic and store that follow it."""
    from domains import usage, virt

    collector = usage.Collector()
    bulk, stored = [], []
    for _ in range(samples):
        started = time.perf_counter()
        counters = virt.usage.sample(conn)
        sampled = time.perf_counter()
        usage.keep(usage.to_keep(collector.collect(record_id, counters)))
        bulk.append(sampled - started)
        stored.append(time.perf_counter() - sampled)
    return statistics.median(bulk), statistics.median(stored)


def per_vm_seconds(conn: Any, limit: int) -> tuple[float, int]:
    """The same figures asked one VM at a time, for up to `limit` VMs: (seconds a VM, VMs asked)."""
    from domains import virt

    domains = conn.listAllDomains(0)[:limit]
    started = time.perf_counter()
    for dom in domains:
        conn.domainListGetStats([dom], virt.usage.STATS_GROUPS, 0)
    return (time.perf_counter() - started) / len(domains), len(domains)


def collection(domain_counts: list[int], samples: int, delay_ms: int, per_vm_limit: int, keep: bool) -> None:
    import libvirt

    import lab
    from bench.list_scale import call_round_trip_ms, scale_domains, sync_host
    from domains.models import Host

    host = lab.up(1, demo_inventory=False, network=True)[0]
    lab.set_link(host.name, delay_ms=delay_ms)
    print(f"{host.name}: one libvirt call over {host.uri.split(':', 1)[0]} takes "
          f"{call_round_trip_ms(host.uri):.1f} ms with its link slowed by {delay_ms} ms each way", flush=True)
    record = Host.objects.create(name="bench", uri=host.uri)
    try:
        for count in domain_counts:
            started = time.perf_counter()
            defined = sync_host(host.socket_uri, scale_domains([host.name], count)[host.name])
            print(f"{defined} domains on {host.name} ({time.perf_counter() - started:.0f} s to define or find them)",
                  flush=True)
            for label, uri in (("unix socket", host.socket_uri), (f"slowed {host.uri.split(':', 1)[0]}", host.uri)):
                conn = libvirt.open(uri)
                try:
                    bulk, stored = timed_samples(conn, record.pk, samples)
                    per_vm, asked = per_vm_seconds(conn, per_vm_limit)
                finally:
                    conn.close()
                total = bulk + stored
                scaled = "" if asked == defined else f", timed on {asked} and scaled"
                print(f"  {defined:6d} VMs, {label:12}: bulk sample {bulk * 1000:8.1f} ms + collect and store "
                      f"{stored * 1000:6.1f} ms = {total * 1000:8.1f} ms a sample ({total / INTERVAL * 100:6.2f} % of "
                      f"the {INTERVAL:.0f} s interval); per-VM path {per_vm * defined * 1000:9.1f} ms{scaled}: "
                      f"bulk {per_vm * defined / bulk:.1f}x faster", flush=True)
    finally:
        record.delete()
        lab.set_link(host.name)
        if not keep:
            sync_host(host.socket_uri, [])
            lab.down()


def history_size(vms: int) -> tuple[int, list[str]]:
    """A simulated day, then a month's 30-minute points: (the host's id, the VMs' UUIDs)."""
    import uuid as uuids

    from django.db import connection

    from domains import history, usage
    from domains.models import Host, UsagePoint
    from domains.virt.usage import DomainCounters, HostCounters

    host = Host.objects.create(name="history", uri="test:///default")
    names = [str(uuids.UUID(int=n + 1)) for n in range(vms)]
    collector = usage.Collector()
    day_start = int(time.time()) // 1800 * 1800 - 86400  # the day just past, so the hour chart has its points
    samples = int(86400 / INTERVAL)
    written = 0
    started = time.perf_counter()
    counters = {name: [0] * 9 for name in names}  # cpu_ns, then the disk and network counters
    noise = random.Random(14)
    for step in range(samples + 1):
        at = step * INTERVAL
        domains = []
        for n, name in enumerate(names):
            # Counters that move unevenly, as a guest's do (so the rates have fractions to keep), never back.
            running = counters[name]
            for index, typical in enumerate((5e9 * (n % 3) / 2, 40960, 81920, 10, 20, 15000, 7000, 10, 10)):
                running[index] += int(typical * noise.uniform(0.5, 1.5))
            domains.append(DomainCounters(
                name, f"vm{n}", 1, 2, running[0], 1 << 20, (1 << 19) + noise.randrange(4096), "guest", *running[1:]))
        collected = collector.collect(host.pk, HostCounters(
            monotonic=at, taken_at=day_start + at, cpus=8, cpu_busy_ns=int(at * 4e9), memory_total_kib=16 << 20,
            memory_free_kib=8 << 20, domains=tuple(domains)))
        written += len(collected.points)
        usage.keep(usage.to_keep(collected))
    simulated = time.perf_counter() - started
    pruned = history.prune(day_start + samples * INTERVAL)
    kept = UsagePoint.objects.filter(host=host).count()
    per_vm_written = written / (vms + 1)  # the host's own points too
    print(f"history: a simulated day of {samples} samples of {vms} VMs in {simulated:.0f} s "
          f"({simulated / samples * 1000:.1f} ms a sample for collect and store)")
    print(f"  rows written per VM per day: {per_vm_written:.0f}; pruned at the day's end: {pruned}; "
          f"kept per VM: {kept / (vms + 1):.0f}")
    earlier = [row for row in UsagePoint.objects.filter(host=host, resolution=1800).values(*history.FIGURES)[:48]]
    month = [history.Point(host.pk, name, 1800, day_start - step * 1800, 180, earlier[step % len(earlier)],
                           earlier[(step + 1) % len(earlier)])
             for name in names for step in range(1, 1440 - 48 + 1)]
    history.save(month)
    kept = UsagePoint.objects.filter(host=host).count()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        page_size = cursor.fetchone()[0]
    database_bytes = pages * page_size
    print(f"  with a month of 30-minute points: {kept / (vms + 1):.0f} rows per VM (bound: "
          f"{sum(resolution.points for resolution in history.RESOLUTIONS)}), database {database_bytes / 2**20:.1f} MiB:"
          f" {database_bytes / kept:.0f} bytes a row, {database_bytes / (vms + 1) / 2**20:.2f} MiB per VM", flush=True)
    return host.pk, names


def chart_data(host_id: int, names: list[str], requests: int) -> float:
    from django.test import Client

    from accounts.models import User
    from domains.models import Host

    admin = User.objects.create_user("bench-admin", password="unused-password", role="admin")  # noqa: S106
    client = Client(HTTP_HOST="127.0.0.1")  # one of the portal's allowed hosts (tests.support.portal)
    client.force_login(admin)
    host = Host.objects.get(pk=host_id)
    worst = 0.0
    for span in SPANS:
        times = []
        for number in range(requests):
            name = names[number * 7919 % len(names)]
            started = time.perf_counter()
            response = client.get(f"/domains/{host.name}/{name}/usage/", {"span": span})
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content[:200]
        points = len(response.json()["series"]["t"])
        p95 = percentile(times, 0.95)
        worst = max(worst, p95)
        print(f"chart data, {span:5}: {points:5d} points, p50 {statistics.median(times):6.1f} ms, "
              f"p95 {p95:6.1f} ms ({requests} requests)")
    return worst


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", default="1000,10000", help="domains on the one lab host, comma-separated")
    parser.add_argument("--samples", type=int, default=5, help="timed samples at each size")
    parser.add_argument("--delay-ms", type=int, default=10, help="the host link's delay, each way (default 10)")
    parser.add_argument("--per-vm-limit", type=int, default=300,
                        help="VMs the per-VM path asks over each connection; its time is scaled to all of them")
    parser.add_argument("--history-vms", type=int, default=100, help="VMs of the simulated day")
    parser.add_argument("--requests", type=int, default=50, help="timed chart requests per span")
    parser.add_argument("--keep", action="store_true", help="leave the lab instance and its domains up")
    args = parser.parse_args(argv)
    if INSTANCE in ("", "0"):
        raise SystemExit("set VMPORTAL_LAB_INSTANCE to a lab instance of the bench's own (not 0, the usual lab)")
    with tempfile.TemporaryDirectory(prefix="vmportal-metrics-bench-") as directory:
        setup_django(Path(directory))
        collection([int(count) for count in args.domains.split(",")], args.samples, args.delay_ms,
                   args.per_vm_limit, args.keep)
        host_id, names = history_size(args.history_vms)
        worst = chart_data(host_id, names, args.requests)
    print(f"chart data headroom: {TARGET_MS:.0f} ms / worst p95 {worst:.1f} ms = {TARGET_MS / worst:.1f}")


if __name__ == "__main__":
    main()
