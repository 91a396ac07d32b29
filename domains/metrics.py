"""GET /metrics: what every host's VMs use and how the dashboard itself is doing, in Prometheus' text format.

Hosts and VMs are read from the database, never from libvirt: each host's latest sample (models.HostUsage,
written by whichever process samples, as domains.usage.counters_to_plain), so a scrape costs the hosts
nothing, is the same few queries whatever the number of VMs, and any web process answers alike.

    vmportal_host_up                  1 when the host's latest sample is younger than 3 sampling intervals
                                      (settings.USAGE_INTERVAL_SECONDS): its watcher reaches it and samples.
                                      The watchers' own reachability lives only in their process
                                      (domains.catalog), and reading it for an unwatched host would call libvirt.
    vmportal_host_sample_age_seconds  now minus that sample's time: how far the host's watcher lags

The per-VM figures and the host's memory and CPU come only from a host that is up: a stale sample's counters
would stand still and read as idle VMs, where an absent series reads as unknown (as libvirt's own exporters
leave out an unreachable host).

The request-duration histogram and the open-websockets gauge are this process's own (RequestDurationMiddleware,
websocket_opened/websocket_closed); open consoles and migration jobs are what the database records.

Guarded by a bearer token (settings.METRICS_TOKEN, VMPORTAL_METRICS_TOKEN): without one configured the
endpoint answers 404 to everybody; with one, any request without `Authorization: Bearer <that token>`
gets 401 and `WWW-Authenticate: Bearer`. No session: Prometheus has none.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consoles import conf as console_conf
from consoles.models import ConsoleTicket
from vmportal.clients import request_client_address

from .models import Host, HostUsage, MigrationJob

logger = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3  # a host whose latest sample is older than this many sampling intervals is down
# An open console whose proxy process has not said it still relays it for this long is counted no more
# (consoles.services counts a user's open consoles the same way; its proxies write every 15 s).
CONSOLE_SEEN_WITHIN = timedelta(seconds=60)


def _seconds_from_ns(value: float) -> float:
    return value / 1e9


def _bytes_from_kib(value: float) -> float:
    return value * 1024


def _as_is(value: float) -> float:
    return float(value)


# Per VM, from its entry in the host's sample: (metric, counter or gauge, help, field, conversion).
_DOMAIN_METRICS: tuple[tuple[str, type[CounterMetricFamily | GaugeMetricFamily], str, str,
                             Callable[[float], float]], ...] = (
    ("vmportal_domain_cpu_seconds_total", CounterMetricFamily,
     "CPU time the VM used, its vCPUs summed, since it started.", "cpu_ns", _seconds_from_ns),
    ("vmportal_domain_memory_used_bytes", GaugeMetricFamily,
     "Memory the VM uses: the guest's own figure where its balloon driver reports one, else what it was given.",
     "memory_used_kib", _bytes_from_kib),
    ("vmportal_domain_disk_read_bytes_total", CounterMetricFamily,
     "Bytes the VM read from its disks, all of them summed, since it started.", "disk_read_bytes", _as_is),
    ("vmportal_domain_disk_write_bytes_total", CounterMetricFamily,
     "Bytes the VM wrote to its disks, all of them summed, since it started.", "disk_write_bytes", _as_is),
    ("vmportal_domain_network_receive_bytes_total", CounterMetricFamily,
     "Bytes the VM received on its interfaces, all of them summed, since it started.", "net_receive_bytes", _as_is),
    ("vmportal_domain_network_transmit_bytes_total", CounterMetricFamily,
     "Bytes the VM sent on its interfaces, all of them summed, since it started.", "net_transmit_bytes", _as_is),
    ("vmportal_domain_state", GaugeMetricFamily,
     "libvirt's state of the VM (virDomainState): 0 no state, 1 running, 2 blocked, 3 paused, 4 shutting down, "
     "5 shut off, 6 crashed, 7 suspended by the guest's power management.", "state", _as_is),
)


class DashboardCollector(Collector):
    """Read at every scrape: enabled hosts with their latest samples (one query), open consoles (one) and
    migration jobs by state (one)."""

    def collect(self) -> Iterator[Metric]:
        yield from usage_metrics(_hosts_with_samples(), now=time.time())
        yield consoles_open_metric()
        yield migration_jobs_metric()


def _hosts_with_samples() -> list[tuple[Host, HostUsage | None]]:
    # The rates are the list's, not exported: not decoded either.
    hosts = Host.objects.filter(enabled=True).select_related("usage").defer("usage__rates").order_by("name")
    # A host never sampled has no row: the reverse one-to-one raises a subclass of AttributeError.
    return [(host, getattr(host, "usage", None)) for host in hosts]


def usage_metrics(hosts: list[tuple[Host, HostUsage | None]], *, now: float) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "vmportal_host_up", f"1 when the host's latest usage sample is younger than {STALE_AFTER_INTERVALS} sampling "
        "intervals (VMPORTAL_USAGE_INTERVAL), else 0.", labels=["host"])
    age = GaugeMetricFamily(
        "vmportal_host_sample_age_seconds", "Seconds since the host's latest usage sample was taken: its watcher's "
        "lag.", labels=["host"])
    memory_free = GaugeMetricFamily("vmportal_host_memory_free_bytes", "The host's free memory.", labels=["host"])
    host_cpu = CounterMetricFamily(
        "vmportal_host_cpu_seconds_total", "Time the host's CPUs were busy (neither idle nor waiting for I/O), summed.",
        labels=["host"])
    domain_families = [(kind(name, documentation, labels=["host", "uuid", "name"]), field, convert)
                       for name, kind, documentation, field, convert in _DOMAIN_METRICS]
    interval = float(settings.USAGE_INTERVAL_SECONDS)
    for host, usage in hosts:
        if usage is None:
            up.add_metric([host.name], 0)
            continue
        sample_age = max(0.0, now - usage.taken_at)  # another machine's clock may run a little ahead
        age.add_metric([host.name], sample_age)
        fresh = interval > 0 and sample_age < STALE_AFTER_INTERVALS * interval
        up.add_metric([host.name], 1 if fresh else 0)
        if not fresh:
            continue
        counters: dict[str, Any] = usage.counters
        if counters.get("memory_free_kib") is not None:  # None where the driver cannot tell
            memory_free.add_metric([host.name], _bytes_from_kib(counters["memory_free_kib"]))
        if counters.get("cpu_busy_ns") is not None:
            host_cpu.add_metric([host.name], _seconds_from_ns(counters["cpu_busy_ns"]))
        for uuid, values in counters.get("domains", {}).items():
            labels = [host.name, uuid, str(values.get("name", ""))]
            for family, field, convert in domain_families:
                if values.get(field) is not None:
                    family.add_metric(labels, convert(values[field]))
    yield from (up, age, memory_free, host_cpu)
    yield from (family for family, _field, _convert in domain_families)


def consoles_open_metric() -> GaugeMetricFamily:
    # As consoles.services counts a user's, across every proxy process: a batch of tickets is one console,
    # opened, not closed, and still reported by its proxy (a killed proxy's consoles drop out).
    seen_after = timezone.now() - max(CONSOLE_SEEN_WITHIN, timedelta(seconds=3 * console_conf.recheck_seconds()))
    count = ConsoleTicket.objects.filter(
        used_at__isnull=False, closed_at__isnull=True, seen_at__gt=seen_after,
    ).aggregate(consoles=Count("batch", distinct=True))["consoles"]
    return GaugeMetricFamily("vmportal_consoles_open", "Consoles open now, through every console proxy.",
                             value=count or 0)


def migration_jobs_metric() -> GaugeMetricFamily:
    # order_by(): the model's ordering would otherwise join the GROUP BY.
    counts = dict(MigrationJob.objects.order_by().values_list("state").annotate(jobs=Count("pk")))
    family = GaugeMetricFamily("vmportal_migration_jobs", "Migration jobs recorded, by state.", labels=["state"])
    for state in MigrationJob.State:  # every state, 0 included, so a rate or an alert never sees a gap
        family.add_metric([state.value], counts.get(state.value, 0))
    return family


# The project's own registry, not prometheus_client's global one: only what this module puts in it, and
# tests read it without other libraries' metrics.
REGISTRY = CollectorRegistry()
REGISTRY.register(DashboardCollector())
_WEBSOCKETS_OPEN = Gauge("vmportal_websockets_open", "Websockets this process holds open now.", registry=REGISTRY)
_REQUEST_DURATION = Histogram(
    "vmportal_http_request_duration_seconds", "Time to answer an HTTP request, by method and URL route.",
    ["method", "route"], registry=REGISTRY)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNROUTED = "(none)"  # the route label of what no URL pattern answered: static files, 404s of unknown paths


def websocket_opened() -> None:
    _WEBSOCKETS_OPEN.inc()


def websocket_closed() -> None:
    _WEBSOCKETS_OPEN.dec()


class RequestDurationMiddleware:
    """Times each request into vmportal_http_request_duration_seconds. Labelled by the route's name, never
    the path (one series per route, not per VM), and by method, any unknown one as "other"."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "other"
        route = request.resolver_match.view_name if request.resolver_match else UNROUTED
        _REQUEST_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return response


_REALM = 'Bearer realm="vmportal metrics"'


@require_GET
def scrape(request: HttpRequest) -> HttpResponse:
    """One Prometheus scrape, for the holder of settings.METRICS_TOKEN only."""
    token = str(settings.METRICS_TOKEN)
    if not token:
        return HttpResponse("Metrics are off: set VMPORTAL_METRICS_TOKEN to export them.\n", status=404,
                            content_type="text/plain; charset=utf-8")
    presented = _bearer_token(request)
    if presented is None:
        return _unauthorized("Send Authorization: Bearer <VMPORTAL_METRICS_TOKEN>.\n", _REALM)
    if not hmac.compare_digest(presented, token.encode()):
        logger.warning("GET /metrics refused: wrong bearer token from %s", request_client_address(request))
        return _unauthorized("Wrong bearer token.\n", f'{_REALM}, error="invalid_token"')
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _bearer_token(request: HttpRequest) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, as the bytes the client sent, or None."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    try:
        return credentials.strip().encode("latin-1")  # servers decode header bytes as latin-1 (PEP 3333, ASGI)
    except UnicodeEncodeError:
        return None


def _unauthorized(message: str, challenge: str) -> HttpResponse:
    response = HttpResponse(message, status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = challenge
    return response
