"""A host's networks (issue 15) on test:///default: its "default" NAT network listed, stopped and started, NAT
networks defined with every bad input a field error in words; and DHCP leases as the list's addresses."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

import libvirt
import pytest
from django.core.cache import cache
from django.urls import reverse

from accounts.models import User
from audit.models import AuditEntry
from domains import guest_addresses, virt
from domains.models import Host
from domains.virt import leases
from domains.virt.addresses import AddressSource
from tests.conftest import TEST_DOMAIN_UUID, client_for

TEST_MAC = "aa:bb:cc:dd:ee:ff"  # the "test" VM's interface, on network "default"
LIST = reverse("networks:list", kwargs={"host_name": "embedded"})


@pytest.fixture
def hypervisor(embedded_host: Host) -> Iterator[libvirt.virConnect]:
    """test:///default, open for the whole test so the dashboard's own connections see the same state."""
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    cache.clear()  # the guest address store lives there


def network_url(name: str = "default", action: bool = False) -> str:
    return reverse("networks:action" if action else "networks:detail", kwargs={"host_name": "embedded", "name": name})


def test_the_list_shows_each_network_with_its_state_forward_mode_bridge_and_dhcp_range(
        hypervisor: libvirt.virConnect, operator_user: User):
    body = client_for(operator_user).get(LIST).content.decode()
    row = body[body.index('data-network="default"'):]
    row = row[:row.index("</tr>")]
    for shown in ("active", "nat", "virbr0", "192.168.122.1/24", "192.168.122.2 – 192.168.122.254", ">Stop<"):
        assert shown in row
    assert "Define a NAT network" not in body  # operators do not define networks


def test_an_operator_stops_and_starts_a_network_and_each_action_is_audited(
        hypervisor: libvirt.virConnect, operator_user: User):
    client = client_for(operator_user)
    stopped = client.post(network_url(action=True), {"action": "stop"}, follow=True).content.decode()
    assert "Network default stopped." in stopped
    assert "<dt>State</dt><dd>inactive" in stopped
    assert "The network is not started." in stopped
    assert not hypervisor.networkLookupByName("default").isActive()

    started = client.post(network_url(action=True), {"action": "start", "back": "list"}, follow=True)
    assert started.redirect_chain[-1][0] == LIST
    assert "Network default started." in started.content.decode()
    assert hypervisor.networkLookupByName("default").isActive()
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "result", "message")) == [
        ("network.stop", AuditEntry.Result.SUCCEEDED, "Network default stopped."),
        ("network.start", AuditEntry.Result.SUCCEEDED, "Network default started."),
    ]


def test_starting_a_network_already_active_says_libvirts_reason(hypervisor: libvirt.virConnect,
                                                                  operator_user: User):
    body = client_for(operator_user).post(network_url(action=True), {"action": "start"}, follow=True).content.decode()
    assert "Network &#x27;default&#x27; is already running." in body
    assert AuditEntry.objects.get().result == AuditEntry.Result.FAILED


def test_autostart_is_switched_on_and_off(hypervisor: libvirt.virConnect, admin_user: User):
    client = client_for(admin_user)
    body = client.post(network_url(action=True), {"action": "autostart"}, follow=True).content.decode()
    assert "Network default starts with its host." in body
    assert hypervisor.networkLookupByName("default").autostart()
    client.post(network_url(action=True), {"action": "no-autostart"})
    assert not hypervisor.networkLookupByName("default").autostart()


def test_an_unknown_network_is_a_404(hypervisor: libvirt.virConnect, admin_user: User):
    assert client_for(admin_user).get(network_url("nosuch")).status_code == 404


def test_the_network_page_says_when_the_driver_cannot_tell_leases(hypervisor: libvirt.virConnect,
                                                                   admin_user: User):
    body = client_for(admin_user).get(network_url()).content.decode()
    assert "The leases could not be read: This host&#x27;s hypervisor does not support that action." in body


def test_a_tenant_is_told_no_network_exists(hypervisor: libvirt.virConnect, tenant_user: User):
    client = client_for(tenant_user)
    assert client.get(LIST).status_code == 404
    assert client.get(network_url()).status_code == 404
    assert client.post(network_url(action=True), {"action": "stop"}).status_code == 404
    assert hypervisor.networkLookupByName("default").isActive()
    assert AuditEntry.objects.get().result == AuditEntry.Result.DENIED


def test_an_admin_defines_a_nat_network_with_its_dhcp_range_derived(hypervisor: libvirt.virConnect,
                                                                     admin_user: User):
    response = client_for(admin_user).post(LIST, {"name": "lab-nat", "subnet": "192.168.150.0/24", "start": "on",
                                                  "autostart": "on"}, follow=True)
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == network_url("lab-nat")
    assert "Network lab-nat defined on embedded." in body
    for shown in ("<dt>State</dt><dd>active", "<dt>Forward</dt><dd>nat", "192.168.150.1/24",
                  "192.168.150.2 – 192.168.150.254"):
        assert shown in body
    network = hypervisor.networkLookupByName("lab-nat")
    assert network.isActive() and network.autostart()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.result) == ("network.define", AuditEntry.Result.SUCCEEDED)
    assert entry.message == "network lab-nat 192.168.150.0/24, DHCP 192.168.150.2-192.168.150.254"


def test_a_given_dhcp_range_is_kept_and_the_network_may_stay_stopped(hypervisor: libvirt.virConnect,
                                                                      admin_user: User):
    client_for(admin_user).post(LIST, {"name": "small", "subnet": "10.77.0.0/28", "dhcp_start": "10.77.0.5",
                                       "dhcp_end": "10.77.0.9"})
    network = hypervisor.networkLookupByName("small")
    assert not network.isActive() and not network.autostart()
    assert "<range start='10.77.0.5' end='10.77.0.9'/>" in network.XMLDesc(0)


@pytest.mark.parametrize(("data", "field", "message"), [
    pytest.param({"name": "default", "subnet": "192.168.150.0/24"}, "name",
                 "This host already has a network named default.", id="name clash"),
    pytest.param({"name": "lab-nat", "subnet": "192.168.0.0/16"}, "subnet",
                 "192.168.0.0/16 overlaps 192.168.122.0/24 of network default.", id="overlap"),
    pytest.param({"name": "lab-nat", "subnet": "192.168.150.1/24"}, "subnet",
                 "192.168.150.1/24 is an address, not a subnet: did you mean 192.168.150.0/24?", id="host bits"),
    pytest.param({"name": "lab-nat", "subnet": "192.168.150"}, "subnet",
                 "192.168.150 is not an IPv4 subnet: write it as 192.168.150.0/24.", id="not a subnet"),
    pytest.param({"name": "lab-nat", "subnet": "10.0.0.0/30"}, "subnet",
                 "A subnet from /8 to /29: room for the host&#x27;s address and at least one guest.", id="too small"),
    pytest.param({"name": "lab nat!", "subnet": "192.168.150.0/24"}, "name",
                 "Up to 50 letters, digits, dots, dashes and underscores", id="bad name"),
    pytest.param({"name": "lab-nat", "subnet": "192.168.150.0/24", "dhcp_start": "192.168.150.1"}, "dhcp_start",
                 "192.168.150.1 is not in 192.168.150.2 to 192.168.150.254", id="range takes the host's address"),
    pytest.param({"name": "lab-nat", "subnet": "192.168.150.0/24", "dhcp_start": "192.168.150.90",
                  "dhcp_end": "192.168.150.20"}, "dhcp_end",
                 "The range ends at 192.168.150.20, before its start 192.168.150.90.", id="range backwards"),
])
def test_bad_input_is_a_field_error_in_words_with_the_values_kept(
        hypervisor: libvirt.virConnect, admin_user: User, data: dict[str, str], field: str, message: str):
    networks_before = hypervisor.listNetworks() + hypervisor.listDefinedNetworks()
    response = client_for(admin_user).post(LIST, data)
    body = response.content.decode()
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in body
    assert f'value="{data["subnet"]}"' in body  # nothing typed is lost
    assert hypervisor.listNetworks() + hypervisor.listDefinedNetworks() == networks_before


def test_an_operator_may_not_define_a_network(hypervisor: libvirt.virConnect, operator_user: User):
    response = client_for(operator_user).post(LIST, {"name": "lab-nat", "subnet": "192.168.150.0/24"})
    assert response.status_code == 404
    assert "lab-nat" not in hypervisor.listNetworks() + hypervisor.listDefinedNetworks()
    assert AuditEntry.objects.get().result == AuditEntry.Result.DENIED


# --- DHCP leases as the list's addresses. ---


def lease(mac: str, address: str, network: str = "default") -> virt.DhcpLease:
    return virt.DhcpLease(network=network, mac=mac, address=address, prefix=24, hostname="guest", expiry=0)


def test_leases_are_matched_to_guests_by_the_macs_of_their_interfaces():
    macs = {"a": frozenset({"52:54:00:00:00:01", "52:54:00:00:00:02"}), "b": frozenset({"52:54:00:00:00:03"}),
            "c": frozenset()}
    found = leases.leased_addresses([lease("52:54:00:00:00:02", "192.168.122.20"),
                                     lease("52:54:00:00:00:01", "192.168.150.9", network="lab-nat"),
                                     lease("52:54:00:00:00:99", "192.168.122.99")], macs)
    assert found == {"a": ("192.168.122.20", "192.168.150.9"), "b": (), "c": ()}


def listed_addresses(user: User) -> tuple[list[str], str]:
    [row] = client_for(user).get("/domains/", {"all": "", "format": "json"}).json()["domains"]
    return row["addresses"], row["address_source"]


LeaseReading = tuple[Callable[[], None], list[virt.DhcpLease], list[str]]


@pytest.fixture
def lease_reader(hypervisor: libvirt.virConnect, monkeypatch: pytest.MonkeyPatch) -> LeaseReading:
    """One round of a LeaseReader of test:///default (not started: each test runs its rounds), the leases its
    host "has" (the test driver tells none), and the guests it reported changed."""
    host_leases: list[virt.DhcpLease] = []
    monkeypatch.setattr(leases, "host_leases", lambda conn: list(host_leases))
    changed: list[str] = []
    reader = leases.LeaseReader("test:///default", name="embedded", connect=lambda: hypervisor,
                                changed=changed.append)
    return lambda: reader._read(hypervisor), host_leases, changed


def test_a_guest_without_agent_shows_its_leased_address_in_the_list(lease_reader: LeaseReading, admin_user: User):
    read_round, host_leases, changed = lease_reader
    read_round()
    assert listed_addresses(admin_user) == ([], "")

    host_leases.append(lease(TEST_MAC, "192.168.122.45"))
    read_round()
    assert changed == [TEST_DOMAIN_UUID]
    assert listed_addresses(admin_user) == (["192.168.122.45"], "lease")
    page = client_for(admin_user).get("/domains/", {"all": ""}).content.decode()
    assert '<td class="addresses col-lg" data-address-source="lease">192.168.122.45 <small' in page

    host_leases.clear()  # the lease expired
    read_round()
    assert changed == [TEST_DOMAIN_UUID, TEST_DOMAIN_UUID]
    assert listed_addresses(admin_user) == ([], "")


def test_the_agents_addresses_come_before_the_leases(lease_reader: LeaseReading, admin_user: User):
    read_round, host_leases, _changed = lease_reader
    host_leases.append(lease(TEST_MAC, "192.168.122.45"))
    read_round()
    guest_addresses.store.write("test:///default", TEST_DOMAIN_UUID, ("192.168.122.45", "fd00::45"),
                                AddressSource.AGENT)
    assert listed_addresses(admin_user) == (["192.168.122.45", "fd00::45"], "agent")


def test_a_lease_of_a_guest_that_stopped_is_no_longer_its_address(lease_reader: LeaseReading,
                                                                   hypervisor: libvirt.virConnect):
    read_round, host_leases, changed = lease_reader
    host_leases.append(lease(TEST_MAC, "192.168.122.45"))
    read_round()
    hypervisor.lookupByName("test").destroy()
    read_round()  # dnsmasq keeps the lease until it expires
    assert guest_addresses.store.read("test:///default", [TEST_DOMAIN_UUID], [AddressSource.LEASE]) == {}
    assert changed == [TEST_DOMAIN_UUID, TEST_DOMAIN_UUID]


def next_change_with_addresses(events: queue.Queue[virt.HostEvent], *, timeout: float) -> virt.DomainChanged:
    deadline = time.monotonic() + timeout
    seen: list[virt.HostEvent] = []
    while True:
        try:
            event = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no row with addresses within {timeout} s; got {seen}") from None
        if isinstance(event, virt.DomainChanged) and event.record.addresses:
            return event
        seen.append(event)


def test_a_network_that_starts_has_its_leases_read_at_once_and_the_guests_row_shows_them(
        hypervisor: libvirt.virConnect, monkeypatch: pytest.MonkeyPatch):
    host_leases: list[virt.DhcpLease] = []
    reads: list[float] = []

    def read_leases(_conn: libvirt.virConnect) -> list[virt.DhcpLease]:
        reads.append(time.monotonic())
        return list(host_leases)

    monkeypatch.setattr(leases, "host_leases", read_leases)
    events: queue.Queue[virt.HostEvent] = queue.Queue()
    # Leases read every hour: a read after the first is the network's start.
    watcher = virt.HostWatcher("test:///default", events.put, name="embedded", resync_seconds=3600,
                               lease_interval=3600).start()
    try:
        synced = events.get(timeout=10)
        assert isinstance(synced, virt.HostSynced) and not synced.records[0].addresses
        deadline = time.monotonic() + 10
        while not reads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reads, "the lease reader did not read when its watcher started"
        host_leases.append(lease(TEST_MAC, "192.168.122.45"))
        virt.stop_network("test:///default", "default")
        virt.start_network("test:///default", "default")
        event = next_change_with_addresses(events, timeout=10)
        assert (event.record.uuid, event.record.addresses, event.record.address_source) == (
            TEST_DOMAIN_UUID, ("192.168.122.45",), "lease")
        assert len(reads) == 2
    finally:
        watcher.stop()
