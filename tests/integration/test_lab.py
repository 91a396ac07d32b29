"""The lab as the dashboard and its users meet it: separate hosts, demo guests that answer, migration."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

import lab
from tests.conftest import KEEP_LAB
from tests.integration.helpers import agent, agent_answers, domain_state, domains, host_of, virsh, wait_until

pytestmark = pytest.mark.integration

BOOT_TIMEOUT = 180  # seconds; every guest boots at once under TCG on a small machine
RUNNING_DEMO_VMS = {"demo-vga", "demo-cirrus", "demo-vmvga", "demo-spice", "demo-transient"}


def test_each_host_is_its_own_libvirtd(lab_hosts: list[lab.LabHost]) -> None:
    assert [virsh(host, "hostname") for host in lab_hosts] == ["lab1", "lab2"]
    # The first <uuid> of the capabilities is the host's: migration needs them to differ.
    host_uuids = {re.search(r"<uuid>(.+?)</uuid>", virsh(host, "capabilities")) for host in lab_hosts}
    assert len({match.group(1) for match in host_uuids if match}) == len(lab_hosts)


def test_each_host_lists_its_demo_vms(lab_hosts: list[lab.LabHost]) -> None:
    placement = lab.demo_placement(lab_hosts)
    assert sorted(name for names in placement.values() for name in names) == sorted(vm.name for vm in lab.DEMO_VMS)
    for host in lab_hosts:
        assert set(placement[host.name]) <= domains(host), host.name


def test_demo_vms_are_in_their_demo_states(lab_hosts: list[lab.LabHost]) -> None:
    def info(domain: str) -> dict[str, str]:
        lines = virsh(host_of(lab_hosts, domain), "dominfo", domain).splitlines()
        return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}

    for domain in RUNNING_DEMO_VMS:
        assert domain_state(host_of(lab_hosts, domain), domain) == "running", domain
    assert domain_state(host_of(lab_hosts, "demo-paused"), "demo-paused") == "paused"
    assert domain_state(host_of(lab_hosts, "demo-off"), "demo-off") == "shut off"
    assert info("demo-saved")["State"] == "shut off"
    assert info("demo-saved")["Managed save"] == "yes"
    assert info("demo-vga")["Autostart"] == "enable"
    assert info("demo-transient")["Persistent"] == "no"
    snapshots = virsh(host_of(lab_hosts, "demo-snap"), "snapshot-list", "--name", "demo-snap").split()
    assert sorted(snapshots) == ["base", "configured"]


def test_running_guests_answer_through_their_agent_with_an_address(lab_hosts: list[lab.LabHost]) -> None:
    # Only the demo guests: other tests' throwaway guests may come and go meanwhile.
    running = {(host, domain) for host in lab_hosts for domain in domains(host, active_only=True)
               if domain.startswith("demo-")}
    running = {(host, domain) for host, domain in running if domain_state(host, domain) == "running"}
    assert {domain for _, domain in running} >= RUNNING_DEMO_VMS
    for host, domain in running:
        _check_agent_and_address(host, domain)


def _check_agent_and_address(host: lab.LabHost, domain: str) -> None:
    wait_until(lambda: agent_answers(host, domain), timeout=BOOT_TIMEOUT, what=f"agent of {domain}")
    assert agent(host, domain, "guest-get-host-name") == {"host-name": domain}
    wait_until(lambda: _guest_ipv4_addresses(host, domain) != [], timeout=60, what=f"address of {domain}")


def _guest_ipv4_addresses(host: lab.LabHost, domain: str) -> list[str]:
    return [
        address["ip-address"]
        for interface in agent(host, domain, "guest-network-get-interfaces")
        if interface["name"] != "lo"
        for address in interface.get("ip-addresses", [])
        if address["ip-address-type"] == "ipv4"
    ]


def test_displays_listen_where_each_hosts_console_route_reaches_them(lab_hosts: list[lab.LabHost]) -> None:
    """An SSH host's on its own loopback (reached through SSH), a TLS host's on its address (VeNCrypt)."""
    for host in lab_hosts:
        address = "127.0.0.1" if host.uri.startswith("qemu+ssh://") else host.migration_address
        for domain in domains(host, active_only=True):
            display = virsh(host, "domdisplay", domain)
            assert re.fullmatch(rf"(vnc|spice)://{re.escape(address)}:\d+", display), (domain, display)
            if domain.startswith("demo-"):
                assert display.startswith("spice" if domain == "demo-spice" else "vnc"), (domain, display)


@pytest.mark.parametrize("peer_to_peer", [True, False], ids=["p2p", "managed"])
def test_a_running_guest_live_migrates_and_keeps_answering(lab_hosts: list[lab.LabHost], peer_to_peer: bool) -> None:
    domain = "demo-cirrus"
    source = host_of(lab_hosts, domain)
    destination = next(host for host in lab_hosts if host != source)
    wait_until(lambda: agent_answers(source, domain), timeout=BOOT_TIMEOUT, what=f"agent of {domain} before")
    try:
        _migrate(domain, source, destination, peer_to_peer=peer_to_peer)
        assert domain not in domains(source)
        assert domain_state(destination, domain) == "running"
        wait_until(lambda: agent_answers(destination, domain), timeout=30, what=f"agent of {domain} after")
    finally:
        if domain in domains(destination, active_only=True):
            _migrate(domain, destination, source, peer_to_peer=peer_to_peer)
    assert domain_state(source, domain) == "running"


def _migrate(domain: str, source: lab.LabHost, destination: lab.LabHost, *, peer_to_peer: bool) -> None:
    """Plain virsh: with --p2p the source daemon itself connects to the destination's URI."""
    mode = ["--p2p"] if peer_to_peer else []
    virsh(source, "migrate", "--live", *mode, "--persistent", "--undefinesource", domain, destination.uri)


@pytest.mark.parametrize("mode", ["acpi", "agent"])
def test_a_guest_boots_to_its_agent_and_shuts_down(
    lab_hosts: list[lab.LabHost], mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    domain = "demo-off"
    host = host_of(lab_hosts, domain)
    start = time.monotonic()
    virsh(host, "start", domain)
    try:
        wait_until(lambda: agent_answers(host, domain), timeout=BOOT_TIMEOUT, what=f"agent of {domain}")
        with capsys.disabled():
            kind = "KVM" if os.environ.get("VMPORTAL_LAB_KVM") == "1" else "TCG"
            print(f"\n{domain} booted to guest-ping in {time.monotonic() - start:.1f} s ({kind})")
        virsh(host, "shutdown", "--mode", mode, domain)
        wait_until(lambda: domain_state(host, domain) == "shut off", timeout=60, what=f"{mode} shutdown")
    finally:
        if domain_state(host, domain) != "shut off":
            virsh(host, "destroy", domain)


@pytest.mark.lab_down
def test_down_leaves_no_process_mount_or_socket(lab_hosts: list[lab.LabHost]) -> None:
    if KEEP_LAB:
        pytest.skip("VMPORTAL_LAB_KEEP=1 keeps the lab running")
    lab_processes = _lab_processes()
    assert {"libvirtd", "virtlogd", "qemu-system-x86"} <= set(lab_processes.values())

    lab.down()

    assert [pid for pid in lab_processes if _is_running(pid)] == []
    assert _lab_processes() == {}
    assert all(not status.running and not status.pids for status in lab.status())
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert "vmportal-lab" not in mountinfo
    leftovers = [path for path in Path("/run/vmportal-lab").rglob("*") if path.is_socket()]
    assert leftovers == []


def _lab_processes() -> dict[int, str]:
    """pid -> name of the running processes of the lab: those in other mount namespaces started for it."""
    own_namespace = os.readlink("/proc/self/ns/mnt")
    processes = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_running(int(entry.name)):
            try:
                namespace = os.readlink(entry / "ns/mnt")
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                name = (entry / "comm").read_text().strip()
            except (FileNotFoundError, PermissionError):  # gone, or not ours to look at
                continue
            if namespace != own_namespace and ("vmportal-lab" in command or "guest=demo-" in command):
                processes[int(entry.name)] = name
    return processes


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
