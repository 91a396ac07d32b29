"""The lab network: hosts on a bridge in namespaces of their own, which the dashboard reaches over SSH and TLS.

These tests run a lab instance of their own (VMPORTAL_LAB_INSTANCE) through `python -m lab`, and
take it down at the end: the shared lab keeps serving the other tests meanwhile.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab
from accounts.models import User
from domains import selectors
from domains.filters import ListQuery
from domains.models import Host
from lab import pki
from tests.integration.helpers import lab_instance, virsh

pytestmark = pytest.mark.integration

INSTANCE = "7"  # its directories end in -7, its range is 10.213.7.0/24, its link is vmportal-lab7
RUN_DIR = Path(f"/run/vmportal-lab-{INSTANCE}")
KNOWN_HOSTS = Path(f"/var/lib/vmportal-lab-{INSTANCE}/network/known_hosts")
PKI_CLIENT_DIR = Path(f"/var/lib/vmportal-lab-{INSTANCE}/network/pki/client")
UPLINK = Path(f"/sys/class/net/vmportal-lab{INSTANCE}")
PROBE_XML = """<domain type='qemu'><name>net-probe</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>"""


def _lab(*args: str) -> str:
    return lab_instance(INSTANCE, *args)


@pytest.fixture(scope="module")
def network_lab(lab_session: None) -> Iterator[dict[str, list[lab.LabHost]]]:
    """Two hosts on the lab network: transport ("unix", "ssh", "tls") -> each host as that URI reaches it."""
    try:
        output = _lab("up", "--network", "--hosts", "2", "--no-demo")
        hosts = [line.split("\t") for line in output.splitlines()]
        yield {
            transport: [lab.LabHost(name=f"{host[0]}-{transport}", uri=host[column]) for host in hosts]
            for column, transport in enumerate(("unix", "ssh", "tls"), start=1)
        }
    finally:
        _lab("down")


def _listing(user: User, hosts: list[lab.LabHost]) -> selectors.DomainListing:
    Host.objects.all().delete()
    for host in hosts:
        Host.objects.create(name=host.name, uri=host.uri)
    return selectors.domain_list(user=user, query=ListQuery(options=frozenset({"all"})))


@pytest.mark.parametrize("transport", ["ssh", "tls"])
def test_the_dashboard_lists_each_host_over_the_network(
    network_lab: dict[str, list[lab.LabHost]], admin_user: User, transport: str
) -> None:
    hosts = network_lab[transport]
    assert [virsh(host, "hostname") for host in hosts] == ["lab1", "lab2"]  # each at its own address
    lab1 = network_lab["unix"][0]
    _define_probe(lab1)
    try:
        listing = _listing(admin_user, hosts)
        assert listing.unreachable == []
        listed = {(row.host.name, row.record.name) for row in listing.rows}
        expected = {(f"{unix.name.removesuffix('-unix')}-{transport}", name)
                    for unix in network_lab["unix"] for name in virsh(unix, "list", "--all", "--name").split()}
        assert ("lab1-" + transport, "net-probe") in listed
        assert listed == expected
    finally:
        virsh(lab1, "undefine", "net-probe")


def _define_probe(host: lab.LabHost) -> None:
    completed = subprocess.run(["virsh", "--connect", host.uri, "define", "/dev/stdin"], input=PROBE_XML,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_a_host_whose_key_is_not_the_pinned_one_is_refused(
    network_lab: dict[str, list[lab.LabHost]], admin_user: User
) -> None:
    pinned = KNOWN_HOSTS.read_text()
    lab1_address, lab2_key = pinned.splitlines()[0].split()[0], pinned.splitlines()[1].split(maxsplit=1)[1]
    KNOWN_HOSTS.write_text(f"{lab1_address} {lab2_key}\n" + pinned.splitlines()[1] + "\n")
    try:
        listing = _listing(admin_user, network_lab["ssh"])
    finally:
        KNOWN_HOSTS.write_text(pinned)
    assert [unreachable.host.name for unreachable in listing.unreachable] == ["lab1-ssh"]


def test_a_dashboard_trusting_another_ca_refuses_the_hosts_over_tls(
    network_lab: dict[str, list[lab.LabHost]], admin_user: User, tmp_path: Path
) -> None:
    pki.ensure_authority(tmp_path)  # another CA, and a client certificate of its own
    hosts = [lab.LabHost(name=host.name, uri=host.uri.replace(str(PKI_CLIENT_DIR), str(tmp_path / "client")))
             for host in network_lab["tls"]]
    assert all(str(tmp_path) in host.uri for host in hosts)
    listing = _listing(admin_user, hosts)
    assert sorted(unreachable.host.name for unreachable in listing.unreachable) == ["lab1-tls", "lab2-tls"]


def test_down_leaves_no_namespace_link_process_mount_or_socket(network_lab: dict[str, list[lab.LabHost]]) -> None:
    processes = _processes_of_instance()
    assert {"libvirtd", "virtlogd", "sshd"} <= set(processes.values())
    network_namespaces = {os.readlink(f"/proc/{pid}/ns/net") for pid in processes} - {os.readlink("/proc/self/ns/net")}
    assert len(network_namespaces) == 3  # the bridge's and each host's

    _lab("down")

    assert _processes_of_instance() == {}
    assert _network_namespaces_in_use() & network_namespaces == set()
    assert not UPLINK.exists()
    assert f"vmportal-lab-{INSTANCE}" not in Path("/proc/self/mountinfo").read_text()
    assert [path for path in RUN_DIR.rglob("*") if path.is_socket()] == []
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True)
    assert f"10.213.{INSTANCE}." not in routes.stdout


def _processes_of_instance() -> dict[int, str]:
    """pid -> name of the processes started for this instance: their command lines name its directories."""
    processes = {}
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            name = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, NotADirectoryError, PermissionError, ProcessLookupError):
            continue
        if f"vmportal-lab-{INSTANCE}/".encode() in command and state != "Z" and int(entry.name) != os.getpid():
            processes[int(entry.name)] = name
    return processes


def _network_namespaces_in_use() -> set[str]:
    namespaces = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                namespaces.add(os.readlink(entry / "ns/net"))
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
    return namespaces
