"""Lab hosts: one libvirtd + virtlogd pair per host, each in its own mount and UTS namespace.

Inside a host's namespace the system's libvirt directories are bind mounts of that host's own
directories, so every daemon has its own configuration, domains, logs and capabilities cache while
they all share one kernel, one QEMU and the socket directory under /run/vmportal-lab/sockets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from lab import network as lab_network
from lab.paths import CACHE_DIR, LOCK_FILE, RUN_DIR, STATE_DIR, HostPaths
from lab.process import (
    LabError,
    file_lock,
    is_alive,
    namespace_of,
    processes_in_namespace,
    read_pid,
    run,
    start_host_init,
    terminate,
)
from lab.virsh import domain_names, virsh

REQUIRED_PROGRAMS = ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img", "unshare", "dpkg-deb")
DAEMON_START_TIMEOUT = 60


@dataclass(frozen=True)
class LabHost:
    name: str
    uri: str  # how the dashboard reaches it: over SSH or TLS on the lab network, else its unix socket
    socket_uri: str = ""  # its unix socket, for the lab's own work and tests that do not care about transport
    ssh_uri: str = ""  # qemu+ssh://... and
    tls_uri: str = ""  # qemu+tls://... when the host is on the lab network
    migration_address: str = ""  # where other hosts send migrations, on the lab network


@dataclass(frozen=True)
class LabHostStatus:
    name: str
    uri: str
    running: bool
    pids: dict[str, int] = field(default_factory=dict)  # daemon name -> pid, for those alive
    domains: int = 0
    active_domains: int = 0


def available() -> tuple[bool, str]:
    """Whether this machine can run the lab, and if not, why."""
    if os.geteuid() != 0:
        return False, "the lab needs root: it mounts directories and runs libvirtd"
    network = lab_network.requested()
    programs = REQUIRED_PROGRAMS + (lab_network.REQUIRED_PROGRAMS if network else ())
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        return False, f"missing programs: {', '.join(missing)} (see lab/DEBIAN_PACKAGES)"
    # Root in a container may still be refused new namespaces: try the ones a lab host is started in.
    kinds = ["--mount", "--uts", *(["--net"] if network else [])]
    probe = subprocess.run(["unshare", *kinds, "--propagation", "private", "true"],  # noqa: S607
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        refused = "mount, UTS and network" if network else "mount and UTS"
        return False, f"new {refused} namespaces are refused here: {probe.stderr.strip() or probe.returncode}"
    return True, ""


def lab_lock() -> AbstractContextManager[None]:
    """Held while changing the lab, so that concurrent `lab up` and `lab down` run one after the other."""
    return file_lock(LOCK_FILE)


def start_hosts(count: int, *, network: bool = False) -> list[LabHost]:
    """Make hosts lab1..lab<count> run, starting those that are not; return them. Needs lab_lock().

    With network, each host is on the lab network (lab.network) and answers over SSH too.
    """
    if count < 1:
        raise ValueError("the lab needs at least one host")
    ready, reason = available()
    if not ready:
        raise LabError(reason)
    _unmount_stale()
    new_bridge = network and lab_network.start_network()
    hosts = []
    for number in range(1, count + 1):
        paths = HostPaths(f"lab{number}")
        running = _is_running(paths)
        if running and _is_networked(paths) != network:
            running = False  # started on (or off) the lab network by an earlier `up`: restarted as asked
        elif running and network:
            running = not new_bridge  # else its link went with the old bridge
        if not running:
            _stop(paths)  # whatever a crash left behind
            try:
                _start(paths, network=network)
            except LabError:
                _stop(paths)
                raise
        hosts.append(_lab_host(paths))
    if network:
        lab_network.write_known_hosts(known_hosts())
    return hosts


def status() -> list[LabHostStatus]:
    statuses = []
    for paths in known_hosts():
        pids = {
            daemon: pid
            for daemon, pid in _daemon_pids(paths).items()
            if pid is not None and namespace_of(pid) == _recorded_namespace(paths)
        }
        running = _is_running(paths)
        statuses.append(
            LabHostStatus(
                name=paths.name,
                uri=paths.uri,
                running=running,
                pids=pids,
                domains=len(domain_names(paths.uri)) if running else 0,
                active_domains=len(domain_names(paths.uri, active_only=True)) if running else 0,
            )
        )
    return statuses


def stop_hosts() -> None:
    """Stop every guest and daemon of the lab, and its network; raise LabError if anything is left behind.

    Needs lab_lock().
    """
    for paths in known_hosts():
        _stop(paths)
    lab_network.stop_network()
    _unmount_stale()
    leftovers = [str(socket) for socket in RUN_DIR.glob("sockets/*/*")] + _lab_mounts() + lab_network.leftovers()
    if leftovers:
        raise LabError(f"the lab left behind: {', '.join(leftovers)}")


def _lab_host(paths: HostPaths) -> LabHost:
    if not _is_networked(paths):
        return LabHost(name=paths.name, uri=paths.uri, socket_uri=paths.uri)
    ssh_uri, tls_uri = lab_network.ssh_uri(paths), lab_network.tls_uri(paths)
    return LabHost(
        name=paths.name, uri=ssh_uri if lab_network.transport_of(paths) == "ssh" else tls_uri, socket_uri=paths.uri,
        ssh_uri=ssh_uri, tls_uri=tls_uri, migration_address=str(lab_network.host_address(paths)),
    )


def _is_networked(paths: HostPaths) -> bool:
    libvirtd_pid = read_pid(paths.libvirtd_pid_file)
    return libvirtd_pid is not None and lab_network.is_networked(libvirtd_pid)


def known_hosts() -> list[HostPaths]:
    """Every host the lab has set up, running or not."""
    names = {path.name for path in (STATE_DIR / "hosts").glob("lab*")}
    names |= {path.name for path in (RUN_DIR / "hosts").glob("lab*")}
    return sorted((HostPaths(name) for name in names), key=lambda paths: paths.number)


def _start(paths: HostPaths, *, network: bool) -> None:
    _write_configuration(paths, network=network)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.socket_dir.chmod(0o700)  # auth is "none": the directory is what keeps non-root users out
    for target, source in paths.bind_mounts.items():
        source.mkdir(parents=True, exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)  # a mount point, left empty outside the hosts
    plan = {
        "hostname": paths.name,
        "binds": [[str(source), str(target)] for target, source in paths.bind_mounts.items()],
        "commands": [
            *(lab_network.prepare_host(paths) if network else []),
            ["virtlogd", "--daemon", "--pid-file", str(paths.virtlogd_pid_file)],
            _libvirtd_command(paths, network=network),
        ],
    }
    start_host_init(plan, network=network)
    libvirtd_pid = read_pid(paths.libvirtd_pid_file)
    namespace = namespace_of(libvirtd_pid) if libvirtd_pid else None
    if namespace is None:
        raise LabError(f"libvirtd of {paths.name} exited at start; see {paths.state_dir}/log/libvirtd.log")
    paths.namespace_file.write_text(namespace)
    _wait_until_answering(paths)


def _libvirtd_command(paths: HostPaths, *, network: bool) -> list[str]:
    return ["libvirtd", "--daemon", *(["--listen"] if network else []), "--pid-file", str(paths.libvirtd_pid_file)]


def in_host_network(name: str, command: Sequence[str]) -> list[str]:
    """The command line that runs `command` in a host's network (its loopback, its address), as on the host."""
    libvirtd = read_pid(HostPaths(name).libvirtd_pid_file)
    if libvirtd is None:
        raise LabError(f"{name} is not running")
    if not _is_networked(HostPaths(name)):
        return list(command)
    return ["nsenter", f"--net=/proc/{libvirtd}/ns/net", *command]


def set_link(name: str, *, delay_ms: int = 0, silent: bool = False) -> None:
    """Make a networked host's link slow (delay_ms each way), silent, or normal again (lab.network.set_link)."""
    lab_network.set_link(HostPaths(name), delay_ms=delay_ms, silent=silent)


def restart_libvirtd(name: str) -> None:
    """Stop a host's libvirtd (its guests keep running, as on a real host) and start a new one in its namespaces."""
    paths = HostPaths(name)
    libvirtd, virtlogd = read_pid(paths.libvirtd_pid_file), read_pid(paths.virtlogd_pid_file)
    if libvirtd is None or virtlogd is None:
        raise LabError(f"{name} is not running")
    network = _is_networked(paths)
    terminate([libvirtd])
    namespaces = ["--mount", "--uts", *(["--net"] if network else [])]
    run(["nsenter", "--target", str(virtlogd), *namespaces, *_libvirtd_command(paths, network=network)])
    _wait_until_answering(paths)


def _write_configuration(paths: HostPaths, *, network: bool) -> None:
    etc = paths.bind_mounts[Path("/etc/libvirt")]
    etc.mkdir(parents=True, exist_ok=True)
    # Derived from the name: stable across restarts, distinct per host (libvirt refuses to
    # migrate between daemons with the same host UUID).
    host_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"vmportal-lab:{paths.name}")
    (etc / "libvirtd.conf").write_text(
        _LIBVIRTD_CONF.format(
            name=paths.name,
            socket_dir=paths.socket_dir,
            host_uuid=host_uuid,
            listen_tls=int(network),
            tls=lab_network.libvirtd_tls_configuration(paths) if network else "",
        )
    )
    (etc / "virtlogd.conf").write_text(_VIRTLOGD_CONF.format(name=paths.name))
    # Separate port ranges, so that daemons allocating at the same moment never collide.
    display_port = 5900 + 100 * (paths.number - 1)
    migration_port = 49152 + 64 * (paths.number - 1)
    (etc / "qemu.conf").write_text(
        _QEMU_CONF.format(
            name=paths.name,
            # On the lab network the host's loopback is its own: the others reach it at its address.
            migration_address=lab_network.host_address(paths) if network else f"127.0.10.{paths.number}",
            display_port_min=display_port,
            display_port_max=display_port + 99,
            migration_port_min=migration_port,
            migration_port_max=migration_port + 63,
            displays=lab_network.display_configuration(paths) if network else lab_network.LOOPBACK_DISPLAYS,
        )
    )


_LIBVIRTD_CONF = """\
# libvirtd of vmportal lab host {name}; rewritten by every `lab up`.
unix_sock_dir = "{socket_dir}"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
listen_tcp = 0
listen_tls = {listen_tls}
host_uuid = "{host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
{tls}"""

_VIRTLOGD_CONF = """\
# virtlogd of vmportal lab host {name}; rewritten by every `lab up`.
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
"""

# QEMU runs as root: as libvirt-qemu it could not open the root-only /dev/kvm, and libvirt would
# then re-probe QEMU's capabilities (seconds each) at every start. No cgroups or per-guest mount
# namespaces: with several daemons on one kernel their cgroup names would collide. Incoming
# migrations listen on a loopback address of the host's own (libvirt refuses 127.0.0.1 itself).
# Displays listen on loopback, except on a "tls" host of the lab network (lab.network.transport_of).
_QEMU_CONF = """\
# QEMU driver of vmportal lab host {name}; rewritten by every `lab up`.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
{displays}remote_display_port_min = {display_port_min}
remote_display_port_max = {display_port_max}
migration_address = "{migration_address}"
migration_host = "{migration_address}"
migration_port_min = {migration_port_min}
migration_port_max = {migration_port_max}
"""


def _wait_until_answering(paths: HostPaths) -> None:
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while not _answers(paths):
        if time.monotonic() > deadline or not is_alive(read_pid(paths.libvirtd_pid_file) or 0):
            raise LabError(f"libvirtd of {paths.name} does not answer; see {paths.state_dir}/log/libvirtd.log")
        time.sleep(0.1)


def _answers(paths: HostPaths) -> bool:
    try:
        virsh(paths.uri, "uri", timeout=10)
    except LabError:
        return False
    return True


def _is_running(paths: HostPaths) -> bool:
    namespace = _recorded_namespace(paths)
    pids = _daemon_pids(paths)
    return (
        namespace is not None
        and all(pid is not None and namespace_of(pid) == namespace for pid in pids.values())
        and _answers(paths)
    )


def _daemon_pids(paths: HostPaths) -> dict[str, int | None]:
    pid_files = {"libvirtd": paths.libvirtd_pid_file, "virtlogd": paths.virtlogd_pid_file}
    if paths.sshd_pid_file.exists() or _is_networked(paths):  # on the lab network
        pid_files["sshd"] = paths.sshd_pid_file
    return {daemon: read_pid(pid_file) for daemon, pid_file in pid_files.items()}


def _recorded_namespace(paths: HostPaths) -> str | None:
    """The host's namespaces, if it has any; never the one this program runs in."""
    try:
        namespace = paths.namespace_file.read_text().strip()
    except FileNotFoundError:
        # A crash between starting the daemons and recording their namespace: ask the daemons.
        candidates = [namespace_of(pid) for pid in _daemon_pids(paths).values() if pid and _is_daemon(pid)]
        namespace = next((candidate for candidate in candidates if candidate), "")
    return namespace if namespace and namespace != namespace_of(os.getpid()) else None


def _is_daemon(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in {"libvirtd", "virtlogd", "sshd"}
    except FileNotFoundError:
        return False


def _stop(paths: HostPaths) -> None:
    """Stop the host's guests and daemons and remove their runtime files, whatever state it is in."""
    if _answers(paths):
        for name in domain_names(paths.uri, active_only=True):
            with suppress(LabError):  # already gone; whatever is left is killed with the namespace below
                virsh(paths.uri, "destroy", name)
    namespace = _recorded_namespace(paths)
    if namespace:
        # Everything in the namespace is the host's: daemons, QEMU, helpers libvirt spawned.
        terminate(processes_in_namespace(namespace))
    shutil.rmtree(paths.run_dir, ignore_errors=True)
    shutil.rmtree(paths.socket_dir, ignore_errors=True)


def _lab_mounts() -> list[str]:
    """Mount points in this namespace on or of lab directories.

    The hosts mount only inside their own namespaces, so any found here are stale: left by an
    interrupted manual set-up, they would hide or pin the lab's files.
    """
    lab_dirs = (str(STATE_DIR), str(RUN_DIR), str(CACHE_DIR))
    mount_points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if any(path == d or path.startswith(d + "/") for path in (root, mount_point) for d in lab_dirs):
            mount_points.append(mount_point)
    return mount_points


def _unmount_stale() -> None:
    for mount_point in reversed(_lab_mounts()):
        run(["umount", "--lazy", mount_point])


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), path)
