"""Where the lab keeps its state, seen from outside the hosts' namespaces."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# 0 is the usual lab. Another number (1-254) runs a second lab beside it, with its own directories and
# network, for a test that must take its lab down while the usual one keeps serving the other tests.
INSTANCE = int(os.environ.get("VMPORTAL_LAB_INSTANCE", "0"))
_SUFFIX = f"-{INSTANCE}" if INSTANCE else ""
STATE_DIR = Path(f"/var/lib/vmportal-lab{_SUFFIX}")  # per-host configuration and domain definitions
RUN_DIR = Path(f"/run/vmportal-lab{_SUFFIX}")  # pid files, sockets, libvirt runtime state
CACHE_DIR = Path("/var/cache/vmportal-lab")  # shared by every instance: the guest images are the same
IMAGES_CACHE_DIR = CACHE_DIR / "images"
# Outside every bind mount, so a path here is the same on every host: disks that migrate live here.
SHARED_STORAGE_DIR = STATE_DIR / "shared"
LOCK_FILE = RUN_DIR / "lock"


@dataclass(frozen=True)
class HostPaths:
    name: str  # lab1, lab2, ...

    @property
    def number(self) -> int:
        return int(self.name.removeprefix("lab"))

    @property
    def state_dir(self) -> Path:
        return STATE_DIR / "hosts" / self.name

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / "hosts" / self.name

    @property
    def socket_dir(self) -> Path:
        """Not covered by any bind mount: the same path inside every host and outside."""
        return RUN_DIR / "sockets" / self.name

    @property
    def socket(self) -> Path:
        return self.socket_dir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def ssh_dir(self) -> Path:
        """The host's sshd configuration and host key, when the lab network is on."""
        return self.state_dir / "ssh"

    @property
    def sshd_pid_file(self) -> Path:
        return self.run_dir / "sshd.pid"

    @property
    def libvirtd_pid_file(self) -> Path:
        return self.run_dir / "libvirtd.pid"

    @property
    def virtlogd_pid_file(self) -> Path:
        return self.run_dir / "virtlogd.pid"

    @property
    def namespace_file(self) -> Path:
        """The host's mount and UTS namespace ids, to recognise its processes later."""
        return self.run_dir / "namespace"

    @property
    def bind_mounts(self) -> dict[Path, Path]:
        """The system's libvirt directories (inside the host) and what replaces each."""
        return {
            Path("/etc/libvirt"): self.state_dir / "etc",
            Path("/var/lib/libvirt"): self.state_dir / "lib",
            Path("/var/log/libvirt"): self.state_dir / "log",
            Path("/var/cache/libvirt"): self.state_dir / "cache",
            Path("/run/libvirt"): self.run_dir / "libvirt",
        }

    def keeps_domain(self, name: str) -> bool:
        """Whether libvirt on this host has domain name, defined or running, even while it is down."""
        return (self.state_dir / "etc/qemu" / f"{name}.xml").exists() or (
            self.run_dir / "libvirt/qemu" / f"{name}.xml"
        ).exists()
