"""The lab talks to its daemons through virsh, as an operator would."""

from __future__ import annotations

import time

from lab.process import LabError, run


def virsh(uri: str, *args: str, timeout: float = 60) -> str:
    return run(["virsh", "--quiet", "--connect", uri, *args], timeout=timeout)


def domain_names(uri: str, *, active_only: bool = False) -> list[str]:
    listing = virsh(uri, "list", "--name", *([] if active_only else ["--all"]))
    return [name for name in listing.splitlines() if name]


def states(uri: str, kind: str) -> dict[str, str]:
    """Name -> "active" or "inactive" of every storage pool (kind "pool") or network ("net"), in one virsh."""
    rows = (line.split() for line in virsh(uri, f"{kind}-list", "--all").splitlines())
    return {row[0]: row[1] for row in rows if len(row) >= 2}


def domain_state(uri: str, name: str) -> str:
    """As virsh prints it: "running", "paused", "shut off", ..."""
    return virsh(uri, "domstate", name).strip()


def has_managed_save(uri: str, name: str) -> bool:
    for line in virsh(uri, "dominfo", name).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Managed save":
            return value.strip() == "yes"
    return False


def agent_ping(uri: str, name: str) -> bool:
    try:
        virsh(uri, "qemu-agent-command", name, '{"execute":"guest-ping"}', "--timeout", "2", timeout=10)
    except LabError:
        return False
    return True


def wait_for_agent(uri: str, name: str, timeout: float = 120) -> float:
    """Wait until the guest agent in name answers; return how long that took, in seconds."""
    start = time.monotonic()
    while not agent_ping(uri, name):
        if time.monotonic() - start > timeout:
            raise LabError(f"the guest agent of {name} did not answer within {timeout} s")
        time.sleep(1)  # each try costs a virsh process, taken from the booting guests' CPUs
    return time.monotonic() - start
