"""The demo inventory: a few small guests spread over the lab hosts, one of each kind the dashboard shows."""

from __future__ import annotations

import enum
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lab.hosts import LabHost, known_hosts
from lab.images import GuestImages, ensure_guest_images
from lab.paths import SHARED_STORAGE_DIR, HostPaths
from lab.process import LabError, run
from lab.virsh import domain_names, domain_state, has_managed_save, states, virsh, wait_for_agent

MEMORY_MIB = 128  # 80 MiB is the least the guest boots with
MANAGED_SAVE_TIMEOUT = 30  # seconds; a 128 MiB guest saves in a few
BOOT_TIMEOUT = 180  # seconds from start to the agent answering, with every guest booting at once


class DemoState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"  # booted, then suspended
    SHUT_OFF = "shut off"
    SAVED = "saved"  # booted, then stopped into a managed save image
    TRANSIENT = "transient"  # running, with no persistent definition


@dataclass(frozen=True)
class DemoVM:
    name: str
    title: str
    graphics: str  # "vnc" or "spice"
    video: str  # libvirt video model
    state: DemoState
    host_index: int  # which lab host it starts on, modulo the number of hosts
    autostart: bool = False
    snapshots: tuple[str, ...] = ()

    def host(self, hosts: Sequence[LabHost]) -> LabHost:
        return hosts[self.host_index % len(hosts)]


DEMO_VMS = (
    DemoVM("demo-vga", "VNC, standard VGA, starts with its host", "vnc", "vga", DemoState.RUNNING, 0, autostart=True),
    DemoVM("demo-cirrus", "VNC, Cirrus VGA", "vnc", "cirrus", DemoState.RUNNING, 1),
    DemoVM("demo-vmvga", "VNC, VMware SVGA", "vnc", "vmvga", DemoState.RUNNING, 0),
    DemoVM("demo-spice", "SPICE, QXL", "spice", "qxl", DemoState.RUNNING, 1),
    DemoVM("demo-paused", "Paused after booting", "vnc", "vga", DemoState.PAUSED, 0),
    DemoVM("demo-off", "Shut off", "vnc", "vga", DemoState.SHUT_OFF, 1),
    DemoVM("demo-saved", "Stopped into a managed save image", "vnc", "vga", DemoState.SAVED, 0),
    DemoVM(
        "demo-snap", "Shut off, with snapshots", "vnc", "vga", DemoState.SHUT_OFF, 1, snapshots=("base", "configured")
    ),
    DemoVM("demo-transient", "Transient: gone once it stops", "vnc", "cirrus", DemoState.TRANSIENT, 1),
)


def demo_placement(hosts: Sequence[LabHost]) -> dict[str, list[str]]:
    """Host name -> names of the demo VMs defined there by define_demo_inventory."""
    placement: dict[str, list[str]] = {host.name: [] for host in hosts}
    for vm in DEMO_VMS:
        placement[vm.host(hosts).name].append(vm.name)
    return placement


def define_demo_inventory(hosts: Sequence[LabHost]) -> None:
    """Create the demo VMs missing from every lab host and bring them to their demo state. Needs lab_lock().

    A VM that exists on any lab host (it may have migrated) is left as it is, except the first time
    after its host's daemon started: the daemon lost its guests then, so those that should run are
    started again. Returns once every guest it started answers through its agent.
    """
    images = ensure_guest_images()
    for host in hosts:
        _ensure_storage_pool(host)
        _ensure_nat_network(host)
    defined = {host.name: set(domain_names(host.socket_uri)) for host in hosts}
    fresh = {host.name for host in hosts if not _restored_marker(host).exists()}
    to_start: list[tuple[LabHost, DemoVM]] = []
    for vm in DEMO_VMS:
        home = next((host for host in hosts if vm.name in defined[host.name]), None)
        if home is None:
            if any(paths.keeps_domain(vm.name) for paths in known_hosts()):
                continue  # on a lab host not in hosts, maybe down: defining it here would make a twin
            home = vm.host(hosts)
            _define(home, vm, images)
            if vm.state is not DemoState.SHUT_OFF:
                to_start.append((home, vm))
        elif home.name in fresh and _lost_its_demo_state(home, vm):
            to_start.append((home, vm))
    with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
        # Started together: each QEMU start waits on its own for libvirt and for the guest to boot.
        started = [pool.submit(_bring_to_state, host, vm, images) for host, vm in to_start]
    for guest in started:
        guest.result()  # raises what went wrong, if anything did
    for host in hosts:
        _restored_marker(host).touch()


STORAGE_POOL = "lab"


def _ensure_storage_pool(host: LabHost) -> None:
    """A directory pool over the shared storage, the same on every host, for the define form's volumes."""
    pools = states(host.socket_uri, "pool")  # checked before every lab test: one virsh, not two
    if STORAGE_POOL in pools:
        if pools[STORAGE_POOL] != "active":
            virsh(host.socket_uri, "pool-start", STORAGE_POOL)
        return
    SHARED_STORAGE_DIR.mkdir(parents=True, exist_ok=True)
    virsh(host.socket_uri, "pool-define-as", STORAGE_POOL, "dir", "--target", str(SHARED_STORAGE_DIR))
    virsh(host.socket_uri, "pool-start", STORAGE_POOL)
    virsh(host.socket_uri, "pool-autostart", STORAGE_POOL)


NAT_NETWORK = "vmportal-nat"
# Inside each host's own network namespace, so the same subnet on every host (and every lab instance) is fine.
NAT_SUBNET = "192.168.150"


def _ensure_nat_network(host: LabHost) -> None:
    """A libvirt NAT network with DHCP (dnsmasq), for guests whose address comes from a lease. Only on a host in a
    network namespace of its own: anywhere else its bridge and firewall rules would be this machine's."""
    if not host.tls_uri:
        return
    networks = states(host.socket_uri, "net")
    if NAT_NETWORK not in networks:
        _virsh_with_xml(host.socket_uri, "net-define", f"""\
<network>
  <name>{NAT_NETWORK}</name>
  <forward mode='nat'/>
  <ip address='{NAT_SUBNET}.1' prefix='24'>
    <dhcp><range start='{NAT_SUBNET}.10' end='{NAT_SUBNET}.250'/></dhcp>
  </ip>
</network>
""")
        virsh(host.socket_uri, "net-autostart", NAT_NETWORK)
    if networks.get(NAT_NETWORK) != "active":
        virsh(host.socket_uri, "net-start", NAT_NETWORK)


def _restored_marker(host: LabHost) -> Path:
    """Present once the demo state was restored since the host's daemon started; down() removes it."""
    return HostPaths(host.name).run_dir / "demo-restored"


def _lost_its_demo_state(host: LabHost, vm: DemoVM) -> bool:
    """On a host whose daemon just started: shut off, or running because libvirt autostarted it."""
    state = domain_state(host.socket_uri, vm.name)
    if vm.state is DemoState.SAVED:
        return state == "shut off" and not has_managed_save(host.socket_uri, vm.name)
    return vm.state in (DemoState.RUNNING, DemoState.PAUSED) and state in ("shut off", "running")


def _define(host: LabHost, vm: DemoVM, images: GuestImages) -> None:
    if vm.state is DemoState.TRANSIENT:
        return  # created when it starts
    _virsh_with_xml(host.socket_uri, "define", domain_xml(vm, images, disk=_fresh_disk(vm) if vm.snapshots else None))
    if vm.autostart:
        virsh(host.socket_uri, "autostart", vm.name)
    for snapshot in vm.snapshots:
        virsh(host.socket_uri, "snapshot-create-as", vm.name, snapshot, f"Demo snapshot {snapshot!r}")


def _fresh_disk(vm: DemoVM) -> Path:
    """A new qcow2 disk, so internal snapshots of an earlier lab cannot clash with the new ones."""
    SHARED_STORAGE_DIR.mkdir(parents=True, exist_ok=True)
    disk = SHARED_STORAGE_DIR / f"{vm.name}.qcow2"
    disk.unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"])
    return disk


def _bring_to_state(host: LabHost, vm: DemoVM, images: GuestImages) -> None:
    """Start vm unless it runs, wait until it is up, then pause or save it if it is meant to be."""
    if vm.state is DemoState.TRANSIENT:
        _virsh_with_xml(host.socket_uri, "create", domain_xml(vm, images))
    elif domain_state(host.socket_uri, vm.name) == "shut off":
        virsh(host.socket_uri, "start", vm.name)
    wait_for_agent(host.socket_uri, vm.name, BOOT_TIMEOUT)
    if vm.state is DemoState.PAUSED:
        virsh(host.socket_uri, "suspend", vm.name)
    elif vm.state is DemoState.SAVED:
        try:
            virsh(host.socket_uri, "managedsave", vm.name, timeout=MANAGED_SAVE_TIMEOUT)
        except LabError:
            # virsh 9.0's job watcher can miss the end of the save and wait forever: the image may be there.
            if not has_managed_save(host.socket_uri, vm.name):
                raise


def domain_xml(vm: DemoVM, images: GuestImages, *, disk: Path | None = None, network: str = "",
               agent: bool = True) -> str:
    """The guest's definition; its one NIC is on user-mode networking, or on the libvirt `network` named."""
    kvm = os.environ.get("VMPORTAL_LAB_KVM") == "1"  # TCG unless asked: nested KVM may not boot
    domain = ET.Element("domain", type="kvm" if kvm else "qemu")
    ET.SubElement(domain, "name").text = vm.name
    ET.SubElement(domain, "title").text = vm.title
    ET.SubElement(domain, "memory", unit="MiB").text = str(MEMORY_MIB)
    ET.SubElement(domain, "vcpu").text = "1"
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_element, "kernel").text = str(images.kernel)
    ET.SubElement(os_element, "initrd").text = str(images.initrd)
    # Kernel messages on the VGA screen only: echoing them on the serial port slows a TCG boot by seconds.
    ET.SubElement(os_element, "cmdline").text = f"console=tty0 vmportal.hostname={vm.name}"
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")  # virsh shutdown presses the ACPI power button
    ET.SubElement(domain, "clock", offset="utc")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"

    devices = ET.SubElement(domain, "devices")
    if disk is not None:
        disk_element = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk_element, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk_element, "source", file=str(disk))
        ET.SubElement(disk_element, "target", dev="vda", bus="virtio")
    interface = ET.SubElement(devices, "interface", type="network" if network else "user")
    if network:
        ET.SubElement(interface, "source", network=network)
    ET.SubElement(interface, "model", type="virtio")
    if agent:
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "target", port="0")
    # No listen address: each host's qemu.conf puts displays where its console route reaches them.
    ET.SubElement(devices, "graphics", type=vm.graphics, autoport="yes")
    video = ET.SubElement(devices, "video")
    ET.SubElement(video, "model", type=vm.video)
    ET.SubElement(devices, "controller", type="usb", model="none")  # less to emulate under TCG
    ET.SubElement(devices, "memballoon", model="virtio")
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def _virsh_with_xml(uri: str, command: str, xml: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as file:
        file.write(xml)
        file.flush()
        virsh(uri, command, file.name)
