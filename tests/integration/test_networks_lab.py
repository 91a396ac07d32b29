"""Networks on a real lab host reached over SSH (issue 15): a guest without a guest agent, its one NIC on the lab's
NAT network, shows the address dnsmasq leased it in the list; a NAT network defined, stopped and started through
the services."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.test import Client

import lab
from accounts.models import User
from audit.models import AuditEntry
from domains import virt
from domains.models import Host
from domains.supervisor import Supervisor
from lab.inventory import NAT_NETWORK, domain_xml
from networks import services
from tests.integration.helpers import virsh, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BOOT_TIMEOUT = 180  # seconds from start to its DHCP lease, with other guests booting at once under TCG
GUEST = "net-lease"


@dataclass(frozen=True)
class LeasedGuest:
    host: lab.LabHost
    uuid: str
    mac: str
    address: str


def lease_of(host: lab.LabHost, mac: str) -> str | None:
    """The address dnsmasq leased to `mac` on the lab's NAT network, as `virsh net-dhcp-leases` prints it."""
    for line in virsh(host, "net-dhcp-leases", NAT_NETWORK).splitlines():
        if mac in line and (found := re.search(r"(\d+\.\d+\.\d+\.\d+)/\d+", line)):
            return found.group(1)
    return None


@pytest.fixture
def leased_guest(lab_hosts: list[lab.LabHost]) -> Iterator[LeasedGuest]:
    """A transient guest on lab1 (an SSH host) with no agent channel, its NIC on the NAT network, once leased."""
    host = lab_hosts[0]
    assert host.tls_uri, "the lab hosts are not on the lab network: the NAT network lives only there"
    vm = lab.DemoVM(GUEST, "Addressed by a DHCP lease", "vnc", "vga", lab.DemoState.TRANSIENT, 0)
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as definition:
        definition.write(domain_xml(vm, lab.ensure_guest_images(), network=NAT_NETWORK, agent=False))
        definition.flush()
        virsh(host, "create", definition.name)
    try:
        mac = re.search(r"<mac address='([0-9a-f:]+)'", virsh(host, "dumpxml", GUEST)).group(1)  # type: ignore[union-attr]
        wait_until(lambda: lease_of(host, mac) is not None, timeout=BOOT_TIMEOUT, what=f"a lease for {GUEST}")
        yield LeasedGuest(host, virsh(host, "domuuid", GUEST), mac, lease_of(host, mac) or "")
    finally:
        virsh(host, "destroy", GUEST)


def listed_row(client: Client, uuid: str) -> dict[str, object]:
    response = client.get("/domains/", {"all": "", "format": "json"})
    assert response.status_code == 200, response.content
    return next(row for row in response.json()["domains"] if row["uuid"] == uuid)


async def test_a_guest_without_agent_shows_its_dhcp_lease_as_its_address(leased_guest: LeasedGuest,
                                                                       admin_user: User) -> None:
    host = leased_guest.host
    await database_sync_to_async(Host.objects.create)(name=host.name, uri=host.uri)
    client = Client()
    await database_sync_to_async(client.force_login)(admin_user)
    supervisor = Supervisor()  # the deployment's watchers, whose LeaseReaders read each host's leases at start
    await supervisor.start()
    try:
        deadline = time.monotonic() + 30
        row = await database_sync_to_async(listed_row)(client, leased_guest.uuid)
        while row["addresses"] != [leased_guest.address] and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            row = await database_sync_to_async(listed_row)(client, leased_guest.uuid)
        assert (row["addresses"], row["address_source"]) == ([leased_guest.address], "lease")
        page = (await database_sync_to_async(client.get)("/domains/", {"all": ""})).content.decode()
        assert f'data-address-source="lease">{leased_guest.address} <small' in page

        network_page = (await database_sync_to_async(client.get)(
            f"/hosts/{host.name}/networks/{NAT_NETWORK}/")).content.decode()
        assert f'<tr data-mac="{leased_guest.mac}"><td><code>{leased_guest.mac}</code></td>' \
               f"<td>{leased_guest.address}/24</td>" in network_page
    finally:
        await supervisor.stop()


@pytest.fixture
def scratch_network(lab_hosts: list[lab.LabHost]) -> Iterator[str]:
    """The name of a NAT network a test defines on lab1; undefined afterwards."""
    yield "scratch-nat"
    names = virsh(lab_hosts[0], "net-list", "--all", "--name").split()
    if "scratch-nat" in names:
        if "scratch-nat" in virsh(lab_hosts[0], "net-list", "--name").split():
            virsh(lab_hosts[0], "net-destroy", "scratch-nat")
        virsh(lab_hosts[0], "net-undefine", "scratch-nat")


def test_a_nat_network_is_defined_stopped_and_started_over_ssh(lab_hosts: list[lab.LabHost], admin_user: User,
                                                               scratch_network: str) -> None:
    host = lab_hosts[0]
    Host.objects.create(name=host.name, uri=host.uri)
    spec = virt.NatNetworkSpec(name=scratch_network, subnet=ipaddress.IPv4Network("192.168.151.0/24"))
    defined = services.network_define(actor=admin_user, host_name=host.name, spec=spec)
    assert (defined.active, defined.autostart, defined.forward_mode, defined.ipv4) == (
        True, True, "nat", "192.168.151.1/24")
    assert re.search(r"Active:\s+yes", virsh(host, "net-info", scratch_network))

    assert services.network_act(actor=admin_user, host_name=host.name, name=scratch_network,
                                action=services.NetworkAction.STOP) == f"Network {scratch_network} stopped."
    assert not virt.get_network(host.uri, scratch_network).active
    assert services.network_act(actor=admin_user, host_name=host.name, name=scratch_network,
                                action=services.NetworkAction.START) == f"Network {scratch_network} started."
    assert virt.get_network(host.uri, scratch_network).active

    # The same subnet again: refused in words, beside the subnet field.
    with pytest.raises(ValidationError) as refused:
        services.network_define(actor=admin_user, host_name=host.name,
                                spec=virt.NatNetworkSpec(name="another", subnet=spec.subnet))
    assert refused.value.message_dict == {
        "subnet": [f"192.168.151.0/24 overlaps 192.168.151.0/24 of network {scratch_network}."]}
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "result")) == [
        ("network.define", AuditEntry.Result.SUCCEEDED), ("network.stop", AuditEntry.Result.SUCCEEDED),
        ("network.start", AuditEntry.Result.SUCCEEDED), ("network.define", AuditEntry.Result.FAILED)]
