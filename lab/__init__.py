"""A libvirt lab on one machine: several libvirtd "hosts" with tiny Linux guests, for demos and tests.

Each host is its own libvirtd (and virtlogd) in its own mount and UTS namespace, reachable at
qemu+unix:///system?socket=/run/vmportal-lab/sockets/<host>/libvirt-sock from anywhere, including
from the other hosts (peer-to-peer migration). On the lab network (lab.network, the default) each host
also has an address of its own, and the dashboard reaches odd hosts over qemu+ssh, even ones over
qemu+tls. Needs root. Never imports libvirt: it drives the daemons and virsh as programs.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab import hosts as _hosts
from lab import inventory as _inventory
from lab import network as _network
from lab.hosts import LabHost, LabHostStatus, available, in_host_network, restart_libvirtd, set_link, status
from lab.images import GuestImages, ensure_guest_images
from lab.inventory import DEMO_VMS, DemoState, DemoVM, demo_placement
from lab.process import LabError


def up(hosts: int = 2, *, demo_inventory: bool = True, network: bool | None = None) -> list[LabHost]:
    """Make lab1..lab<hosts> run, keeping those already up; return them.

    Recovers from a crash (dead daemons, stale pid files and sockets). With demo_inventory, also
    defines the demo VMs and returns once the guests it started answer through their agents. The hosts
    are on the lab network, reached over SSH and TLS, unless network is False (None: VMPORTAL_LAB_NETWORK
    decides, see lab.network.requested).
    """
    with _hosts.lab_lock():
        lab_hosts = _hosts.start_hosts(hosts, network=_network.requested() if network is None else network)
        if demo_inventory:
            _inventory.define_demo_inventory(lab_hosts)
    return lab_hosts


def define_demo_inventory(hosts: Sequence[LabHost]) -> None:
    """Define the demo VMs missing from the lab and bring them to their demo state (see lab.inventory)."""
    with _hosts.lab_lock():
        _inventory.define_demo_inventory(hosts)


def down() -> None:
    """Stop every guest and daemon the lab started; raise LabError if anything is left behind."""
    with _hosts.lab_lock():
        _hosts.stop_hosts()


__all__ = [
    "DEMO_VMS",
    "DemoState",
    "DemoVM",
    "GuestImages",
    "LabError",
    "LabHost",
    "LabHostStatus",
    "available",
    "define_demo_inventory",
    "demo_placement",
    "down",
    "restart_libvirtd",
    "set_link",
    "ensure_guest_images",
    "in_host_network",
    "status",
    "up",
]
