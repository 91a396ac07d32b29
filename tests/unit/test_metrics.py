"""GET /metrics (domains.metrics): refused without its bearer token, and with it each host's latest sample,
the dashboard's own figures and the database's counts, in Prometheus' text format, read back with
prometheus_client's parser."""

from __future__ import annotations

import dataclasses
import time
import uuid as uuidlib
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from consoles.models import ConsoleTicket
from domains import metrics
from domains.models import Host, HostUsage, MigrationJob
from domains.usage import Collector, counters_to_plain, keep, to_keep
from domains.virt.usage import DomainCounters, HostCounters, sample_host
from tests.conftest import TEST_DOMAIN_UUID, client_for

TOKEN = "s3cret-metrics-token-0123456789abcdef"
UUID = "11111111-2222-3333-4444-555555555555"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def metrics_settings(settings) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.USAGE_INTERVAL_SECONDS = 10  # a host is up while its latest sample is under 30 s old


def get_metrics(token: str | None = TOKEN, *, client: Client | None = None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return (client or Client()).get("/metrics", headers=headers)


def scrape() -> Samples:
    response = get_metrics()
    assert response.status_code == 200, response.content[:300]
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


def domain(uuid: str, name: str = "web", **values: Any) -> DomainCounters:
    idle = DomainCounters(uuid=uuid, name=name, state=1, vcpus=2, cpu_ns=0, memory_max_kib=2048, memory_used_kib=1024,
                          memory_source="guest", disk_read_bytes=0, disk_write_bytes=0, disk_read_requests=0,
                          disk_write_requests=0, net_receive_bytes=0, net_transmit_bytes=0, net_receive_packets=0,
                          net_transmit_packets=0)
    return dataclasses.replace(idle, **values)


def seed(host: Host, *domains: DomainCounters, age: float = 1.0, memory_free_kib: int | None = 4096,
         cpu_busy_ns: int = 0) -> HostUsage:
    """The host's latest sample as the collecting process stores it (domains.usage.counters_to_plain)."""
    taken_at = time.time() - age
    counters = HostCounters(monotonic=0, taken_at=taken_at, cpus=4, cpu_busy_ns=cpu_busy_ns, memory_total_kib=8192,
                            memory_free_kib=memory_free_kib, domains=domains)
    return HostUsage.objects.create(host=host, taken_at=taken_at, counters=counters_to_plain(counters))


# --- Who gets an answer. ---


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, TOKEN, "anything"])
def test_without_a_configured_token_nobody_gets_metrics(settings, token: str | None) -> None:
    settings.METRICS_TOKEN = ""
    response = get_metrics(token)
    assert response.status_code == 404
    assert b"vmportal_" not in response.content


@pytest.mark.django_db
def test_without_a_bearer_token_the_answer_is_401_with_a_bearer_challenge() -> None:
    response = get_metrics(None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert "error=" not in response["WWW-Authenticate"]  # RFC 6750: no error code when no token was sent
    assert b"vmportal_" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(("scheme", "token"), [
    pytest.param("Bearer", "wrong", id="another token"),
    pytest.param("Bearer", TOKEN[:-1], id="a prefix of the token"),
    pytest.param("Bearer", TOKEN + "0", id="the token and more"),
    pytest.param("Bearer", "", id="an empty token"),
    pytest.param("Basic", TOKEN, id="the token under another scheme"),
    pytest.param("Bearer", TOKEN + "é", id="not ASCII"),
])
def test_a_wrong_token_is_refused(scheme: str, token: str) -> None:
    response = get_metrics(token, scheme=scheme)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert b"vmportal_" not in response.content


@pytest.mark.django_db
def test_a_logged_in_admin_without_the_token_is_refused_not_sent_to_the_login_page(admin_user: User) -> None:
    response = get_metrics(None, client=client_for(admin_user))
    assert response.status_code == 401
    assert b"vmportal_" not in response.content


@pytest.mark.django_db
def test_the_right_token_needs_no_session_and_the_scheme_is_case_insensitive() -> None:
    response = get_metrics(TOKEN, scheme="bearer")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "sessionid" not in response.cookies


@pytest.mark.django_db
def test_metrics_change_nothing_so_only_get_is_answered() -> None:
    response = Client().post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405


# --- What it says. ---


@pytest.mark.django_db
def test_each_vm_of_a_fresh_sample_is_exported_with_its_labels_in_seconds_and_bytes(embedded_host: Host) -> None:
    name = 'web "prod"\\01\n'  # a tenant chooses it: escaped in the output, read back unchanged
    seed(embedded_host, domain(UUID, name, state=3, cpu_ns=2_500_000_000, memory_used_kib=524_288,
                               disk_read_bytes=1000, disk_write_bytes=2000, net_receive_bytes=3000,
                               net_transmit_bytes=4000))
    samples = scrape()
    vm = {"host": "embedded", "uuid": UUID, "name": name}
    assert value(samples, "vmportal_domain_cpu_seconds_total", **vm) == 2.5
    assert value(samples, "vmportal_domain_memory_used_bytes", **vm) == 512 * 1024 * 1024
    assert value(samples, "vmportal_domain_disk_read_bytes_total", **vm) == 1000
    assert value(samples, "vmportal_domain_disk_write_bytes_total", **vm) == 2000
    assert value(samples, "vmportal_domain_network_receive_bytes_total", **vm) == 3000
    assert value(samples, "vmportal_domain_network_transmit_bytes_total", **vm) == 4000
    assert value(samples, "vmportal_domain_state", **vm) == 3  # VIR_DOMAIN_PAUSED


@pytest.mark.django_db
def test_a_real_sample_of_the_test_hypervisor_is_exported(embedded_host: Host) -> None:
    # The whole path: libvirt's figures, the collector's store, the export.
    keep(to_keep(Collector().collect(embedded_host.pk, sample_host(embedded_host.uri))))
    samples = scrape()
    vm = {"host": "embedded", "uuid": TEST_DOMAIN_UUID, "name": "test"}
    assert value(samples, "vmportal_domain_state", **vm) == 1  # running
    for metric in ("cpu_seconds_total", "memory_used_bytes", "disk_read_bytes_total", "disk_write_bytes_total",
                   "network_receive_bytes_total", "network_transmit_bytes_total"):
        assert value(samples, f"vmportal_domain_{metric}", **vm) >= 0  # the test driver's are zero
    assert value(samples, "vmportal_host_up", host="embedded") == 1
    busy_ns = HostUsage.objects.get(host=embedded_host).counters["cpu_busy_ns"]
    assert busy_ns > 0
    assert value(samples, "vmportal_host_cpu_seconds_total", host="embedded") == pytest.approx(busy_ns / 1e9)


@pytest.mark.django_db
def test_hosts_are_up_while_their_sample_is_fresh_and_a_stale_host_exports_no_vms(embedded_host: Host) -> None:
    stale = Host.objects.create(name="stale", uri="test:///default")
    never = Host.objects.create(name="never-sampled", uri="test:///default")
    disabled = Host.objects.create(name="disabled", uri="test:///default", enabled=False)
    seed(embedded_host, domain(UUID), age=5, memory_free_kib=1_048_576, cpu_busy_ns=7_000_000_000)
    seed(stale, domain("22222222-2222-3333-4444-555555555555"), age=31)  # older than 3 intervals of 10 s
    seed(disabled, domain("33333333-2222-3333-4444-555555555555"))
    samples = scrape()

    assert value(samples, "vmportal_host_up", host="embedded") == 1
    assert value(samples, "vmportal_host_memory_free_bytes", host="embedded") == 1024**3
    assert value(samples, "vmportal_host_cpu_seconds_total", host="embedded") == 7.0
    assert value(samples, "vmportal_host_sample_age_seconds", host="embedded") == pytest.approx(5, abs=2)

    assert value(samples, "vmportal_host_up", host=stale.name) == 0
    assert value(samples, "vmportal_host_sample_age_seconds", host=stale.name) == pytest.approx(31, abs=2)
    assert value(samples, "vmportal_host_up", host=never.name) == 0
    hosts_with_vms = {dict(labels)["host"] for name, labels in samples if name == "vmportal_domain_state"}
    assert hosts_with_vms == {"embedded"}  # not the stale host's figures standing still, nor a disabled host's
    assert not any(dict(labels).get("host") == disabled.name for _name, labels in samples)


@pytest.mark.django_db
def test_a_host_whose_driver_tells_no_free_memory_exports_none(embedded_host: Host) -> None:
    seed(embedded_host, domain(UUID), memory_free_kib=None)
    samples = scrape()
    assert value(samples, "vmportal_host_up", host="embedded") == 1
    assert ("vmportal_host_memory_free_bytes", frozenset({("host", "embedded")})) not in samples


@pytest.mark.django_db
def test_without_sampling_no_host_is_up(settings, embedded_host: Host) -> None:
    settings.USAGE_INTERVAL_SECONDS = 0  # sampling off: no sample can be fresh
    seed(embedded_host, domain(UUID))
    samples = scrape()
    assert value(samples, "vmportal_host_up", host="embedded") == 0
    assert "vmportal_domain_state" not in names(samples)


@pytest.mark.django_db
def test_migration_jobs_are_counted_by_state_every_state_included(embedded_host: Host, admin_user: User) -> None:
    for state in ("running", "failed", "failed", "succeeded", "succeeded", "succeeded"):
        MigrationJob.objects.create(actor=admin_user, actor_name="alice-admin", domain_uuid=UUID, domain_name="web",
                                    source=embedded_host, source_name="embedded", destination_name="gone",
                                    live=True, state=state)
    samples = scrape()
    counts = {state: value(samples, "vmportal_migration_jobs", state=state) for state in MigrationJob.State.values}
    assert counts == {"queued": 0, "running": 1, "cancelling": 0, "succeeded": 3, "failed": 2, "cancelled": 0}


@pytest.mark.django_db
def test_open_consoles_count_relayed_batches_not_closed_stale_or_unopened_tickets(embedded_host: Host,
                                                                                 tenant_user: User) -> None:
    now = timezone.now()

    def ticket(batch: uuidlib.UUID, **fields: object) -> None:
        ConsoleTicket.objects.create(token_hash=uuidlib.uuid4().hex * 2, user=tenant_user, host=embedded_host,
                                     domain_uuid=UUID, domain_name="web", kind="spice", endpoint="spice run 1",
                                     issued_at=now, expires_at=now + timedelta(seconds=30), batch=batch, **fields)

    spice = uuidlib.uuid4()  # one SPICE console: two channels, two tickets
    ticket(spice, used_at=now, seen_at=now)
    ticket(spice, used_at=now, seen_at=now)
    ticket(uuidlib.uuid4(), used_at=now, seen_at=now)  # a VNC console
    ticket(uuidlib.uuid4(), used_at=now, seen_at=now, closed_at=now)  # closed
    ticket(uuidlib.uuid4(), used_at=now - timedelta(hours=1), seen_at=now - timedelta(minutes=10))  # proxy gone
    ticket(uuidlib.uuid4())  # issued, never opened
    assert value(scrape(), "vmportal_consoles_open") == 2


@pytest.mark.django_db
def test_websockets_opened_and_closed_move_the_process_gauge() -> None:
    before = value(scrape(), "vmportal_websockets_open")
    metrics.websocket_opened()
    metrics.websocket_opened()
    try:
        assert value(scrape(), "vmportal_websockets_open") == before + 2
        metrics.websocket_closed()
        assert value(scrape(), "vmportal_websockets_open") == before + 1
    finally:
        metrics.websocket_closed()
    assert value(scrape(), "vmportal_websockets_open") == before


def requests_counted(method: str, route: str) -> float:
    return metrics.REGISTRY.get_sample_value("vmportal_http_request_duration_seconds_count",
                                             {"method": method, "route": route}) or 0.0


@pytest.mark.django_db
def test_the_histogram_counts_each_request_by_route_name_never_by_path() -> None:
    client = Client()
    detail, login = requests_counted("GET", "domains:detail"), requests_counted("GET", "accounts:login")
    unrouted, other = requests_counted("GET", metrics.UNROUTED), requests_counted("other", "metrics")
    client.get("/accounts/login/")
    for uuid in (UUID, TEST_DOMAIN_UUID):  # two paths, one route: anonymous, sent to log in
        assert client.get(f"/domains/embedded/{uuid}/").status_code == 302
    client.get("/no/such/page/")
    client.generic("BREW", "/metrics")  # a method nobody knows does not make a series of its own

    assert requests_counted("GET", "accounts:login") == login + 1
    assert requests_counted("GET", "domains:detail") == detail + 2
    assert requests_counted("GET", metrics.UNROUTED) == unrouted + 1
    assert requests_counted("other", "metrics") == other + 1
    samples = scrape()
    assert value(samples, "vmportal_http_request_duration_seconds_count", method="GET", route="domains:detail") >= 2
    routes = {dict(labels).get("route") for name, labels in samples
              if name.startswith("vmportal_http_request_duration_seconds")}
    assert not any(route and route.startswith("/") for route in routes)  # no raw path became a label


def queries_for_one_scrape() -> int:
    with CaptureQueriesContext(connection) as queries:
        scrape()
    return len(queries)


@pytest.mark.django_db
def test_a_scrape_is_the_same_few_queries_for_one_vm_or_five_hundred(embedded_host: Host) -> None:
    other = Host.objects.create(name="other", uri="test:///default")
    seed(embedded_host, domain(UUID))
    seed(other, domain(UUID))
    with_one = queries_for_one_scrape()

    HostUsage.objects.all().delete()
    many = [domain(str(uuidlib.UUID(int=n)), f"vm-{n}") for n in range(500)]
    seed(embedded_host, *many)
    seed(other, *many)
    with_many = queries_for_one_scrape()
    samples = scrape()

    assert sum(1 for name, _labels in samples if name == "vmportal_domain_state") == 1000  # every VM exported
    assert with_many == with_one <= 3
