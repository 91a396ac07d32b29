"""The lab network, when asked for: each host in a network namespace of its own on a bridge, reached over SSH and TLS.

The bridge is in a namespace of its own too, kept by a process that does nothing else, so the lab
addresses nothing outside the namespaces it creates: each host's namespace has a veth into the
bridge, and this machine (where the dashboard runs) one more, all with addresses of a private range
the lab owns. Inside each host an sshd of the lab's own lets the lab's client key in as root, and the
dashboard's known_hosts pins every host's key; libvirtd listens for TLS there too, with certificates
from the lab's CA (lab.pki). The unix sockets still work: a path is not bound to a network namespace.

Each host has a transport role for its guests' displays (transport_of): odd-numbered hosts are "ssh"
hosts, whose displays listen on their loopback (reached through SSH); even-numbered ones are "tls"
hosts, whose displays listen on the host's address and demand VNC over TLS with a client certificate
from the lab's CA (VeNCrypt x509, the host's certificate); their SPICE displays stay plain.

libvirt's ssh transport passes no known_hosts file to OpenSSH (its known_hosts parameter is for the
libssh transports), so the URIs name the lab's own ssh command: OpenSSH with the lab's configuration,
which accepts no key but the pinned ones.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Literal

from lab import pki
from lab.paths import INSTANCE, RUN_DIR, STATE_DIR, HostPaths
from lab.process import LabError, namespace_of, processes_in_namespace, read_pid, run, start_host_init, terminate

# The lab's own range: instance N of the lab (lab.paths.INSTANCE) takes 10.213.N.0/24.
NETWORK = ipaddress.IPv4Network(f"10.213.{INSTANCE}.0/24")
DASHBOARD_ADDRESS = NETWORK[1]  # this machine's end of its veth into the bridge
UPLINK = f"vmportal-lab{INSTANCE or ''}"  # the name of that veth on this machine
BRIDGE = "br0"
REQUIRED_PROGRAMS = ("ip", "nsenter", "sshd", "ssh-keygen", "virt-ssh-helper", "openssl", "dnsmasq")

NETWORK_STATE_DIR = STATE_DIR / "network"  # the client's key pair, ssh command and configuration
NETWORK_RUN_DIR = RUN_DIR / "network"  # the pid and namespace ids of the bridge's keeper
CLIENT_KEY = NETWORK_STATE_DIR / "id_ed25519"
KNOWN_HOSTS = NETWORK_STATE_DIR / "known_hosts"
AUTHORIZED_KEYS = NETWORK_STATE_DIR / "authorized_keys"
SSH_CONFIG = NETWORK_STATE_DIR / "ssh_config"
SSH_COMMAND = NETWORK_STATE_DIR / "ssh"  # OpenSSH with SSH_CONFIG, for the URIs' command parameter
PKI_DIR = NETWORK_STATE_DIR / "pki"  # the lab's CA; the dashboard's certificate in PKI_DIR/client
_KEEPER_PID_FILE = NETWORK_RUN_DIR / "bridge.pid"
_KEEPER_NAMESPACE_FILE = NETWORK_RUN_DIR / "namespace"
# Debian's sshd refuses to start without it (systemd makes it at boot); it stays empty.
SSHD_PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")


def requested() -> bool:
    """Whether `lab up` puts the hosts on the lab network: yes, unless VMPORTAL_LAB_NETWORK=0 (or --no-network)."""
    return os.environ.get("VMPORTAL_LAB_NETWORK", "1") != "0"


def host_address(paths: HostPaths) -> ipaddress.IPv4Address:
    return NETWORK[10 + paths.number]


Transport = Literal["ssh", "tls"]


def transport_of(paths: HostPaths) -> Transport:
    """How the dashboard reaches a networked host and its displays, as users reach theirs: odd hosts over
    SSH, even ones over TLS."""
    return "tls" if paths.number % 2 == 0 else "ssh"


def display_configuration(paths: HostPaths) -> str:
    """qemu.conf lines for the displays of a networked host, as its transport role wants them."""
    if transport_of(paths) == "ssh":
        return LOOPBACK_DISPLAYS
    return _TLS_DISPLAYS.format(address=host_address(paths), certificates=pki.qemu_credentials(_host_pki_dir(paths)))


LOOPBACK_DISPLAYS = """\
vnc_listen = "127.0.0.1"
spice_listen = "127.0.0.1"
"""

# x509_verify: QEMU accepts only clients with a certificate from the lab's CA, the dashboard's.
_TLS_DISPLAYS = """\
vnc_listen = "{address}"
spice_listen = "{address}"
vnc_tls = 1
vnc_tls_x509_verify = 1
vnc_tls_x509_cert_dir = "{certificates}"
"""


def ssh_uri(paths: HostPaths) -> str:
    """The host as users register theirs, with the lab's client key and ssh command (pinned host keys).

    No socket parameter: the remote side runs virt-ssh-helper, which ignores it and connects to the
    default /run/libvirt/libvirt-sock inside the host, a link to the host's socket (see prepare_host).
    """
    return f"qemu+ssh://root@{host_address(paths)}/system?command={SSH_COMMAND}&keyfile={CLIENT_KEY}&no_tty=1"


def tls_uri(paths: HostPaths) -> str:
    """The host as users reach theirs over TLS: the dashboard's certificate, and only the lab's CA trusted."""
    return f"qemu+tls://{host_address(paths)}/system?pkipath={PKI_DIR / 'client'}"


def libvirtd_tls_configuration(paths: HostPaths) -> str:
    """libvirtd.conf lines of a networked host: TLS on its address, with its certificate (libvirtd --listen)."""
    pki_dir = _host_pki_dir(paths)
    return _LIBVIRTD_TLS.format(
        address=host_address(paths),
        key=pki_dir / "serverkey.pem",
        certificate=pki_dir / "servercert.pem",
        ca=pki_dir / "cacert.pem",
    )


def _host_pki_dir(paths: HostPaths) -> Path:
    return paths.state_dir / "pki"


_LIBVIRTD_TLS = """\
listen_addr = "{address}"
key_file = "{key}"
cert_file = "{certificate}"
ca_file = "{ca}"
"""


def is_networked(pid: int) -> bool:
    """Whether pid runs in a network namespace other than this process's, as a networked host does."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def start_network() -> bool:
    """Make the bridge and this machine's veth into it; return whether they were just made. Needs lab_lock()."""
    missing = [program for program in REQUIRED_PROGRAMS if shutil.which(program) is None]
    if missing:
        raise LabError(f"the lab network needs: {', '.join(missing)} (see lab/DEBIAN_PACKAGES)")
    _write_client_configuration()
    pki.ensure_authority(PKI_DIR)
    if _keeper_namespace() and _link_exists(UPLINK):
        return False
    stop_network()  # whatever a crash left behind
    _check_range_is_free()
    NETWORK_RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        _start_bridge()
    except LabError:
        stop_network()
        raise
    return True


def _start_bridge() -> None:
    plan = {
        "hostname": "lab-bridge",
        "binds": [],
        "commands": [
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "link", "set", BRIDGE, "up"],
        ],
        "pid_file": str(_KEEPER_PID_FILE),
        "hold": True,
    }
    start_host_init(plan, network=True)
    keeper = read_pid(_KEEPER_PID_FILE)
    namespace = namespace_of(keeper) if keeper else None
    if keeper is None or namespace is None:
        raise LabError("the keeper of the lab bridge's namespace exited at start")
    _KEEPER_NAMESPACE_FILE.write_text(namespace)
    run(["ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "uplink", "netns", str(keeper)])
    run(["ip", "address", "add", f"{DASHBOARD_ADDRESS}/{NETWORK.prefixlen}", "dev", UPLINK])
    run(["ip", "link", "set", UPLINK, "up"])
    run(["nsenter", f"--net=/proc/{keeper}/ns/net", "ip", "link", "set", "uplink", "master", BRIDGE, "up"])


def _check_range_is_free() -> None:
    """The lab addresses only its own range: refuse to start if this machine routes any of it already."""
    for route in json.loads(run(["ip", "-json", "-4", "route", "show", "table", "all"])):
        if route["dst"] != "default" and ipaddress.IPv4Network(route["dst"], strict=False).overlaps(NETWORK):
            raise LabError(f"the lab's range {NETWORK} is in use here: {route['dst']} dev {route.get('dev')}")


def _write_client_configuration() -> None:
    NETWORK_STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not CLIENT_KEY.exists():
        _generate_key(CLIENT_KEY, comment="vmportal-lab dashboard")
    AUTHORIZED_KEYS.write_text(CLIENT_KEY.with_suffix(".pub").read_text())
    SSH_CONFIG.write_text(_SSH_CONFIG.format(known_hosts=KNOWN_HOSTS))
    SSH_COMMAND.write_text(f'#!/bin/sh\nexec ssh -F {SSH_CONFIG} "$@"\n')
    SSH_COMMAND.chmod(0o755)


# With -F, OpenSSH reads this file alone: neither ~/.ssh/config nor /etc/ssh/ssh_config.
_SSH_CONFIG = """\
# OpenSSH for the vmportal lab's hosts; rewritten by every networked `lab up`.
Host *
    UserKnownHostsFile {known_hosts}
    GlobalKnownHostsFile none
    StrictHostKeyChecking yes
    IdentitiesOnly yes
    BatchMode yes
"""


def _generate_key(path: Path, *, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def prepare_host(paths: HostPaths) -> list[list[str]]:
    """Write the host's sshd configuration and certificate; return the commands that start its network inside it."""
    paths.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    host_key = paths.ssh_dir / "ssh_host_ed25519_key"
    if not host_key.exists():  # kept across restarts, as a real host's is
        _generate_key(host_key, comment=paths.name)
    sshd_config = paths.ssh_dir / "sshd_config"
    sshd_config.write_text(
        _SSHD_CONFIG.format(
            name=paths.name,
            address=host_address(paths),
            host_key=host_key,
            pid_file=paths.sshd_pid_file,
            authorized_keys=AUTHORIZED_KEYS,
        )
    )
    SSHD_PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, exist_ok=True)
    pki.ensure_host_certificate(PKI_DIR, _host_pki_dir(paths), name=paths.name, address=host_address(paths))
    # Where virt-ssh-helper looks for libvirtd: /run/libvirt inside the host is this directory.
    default_socket = paths.run_dir / "libvirt" / "libvirt-sock"
    default_socket.parent.mkdir(parents=True, exist_ok=True)
    default_socket.unlink(missing_ok=True)
    default_socket.symlink_to(paths.socket)
    keeper = read_pid(_KEEPER_PID_FILE)
    sshd = shutil.which("sshd")
    if keeper is None or sshd is None:
        raise LabError("the lab network is not up")
    peer = paths.name  # the veth's end in the bridge's namespace
    return [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", str(keeper)],
        ["nsenter", f"--net=/proc/{keeper}/ns/net", "ip", "link", "set", peer, "master", BRIDGE, "up"],
        ["ip", "address", "add", f"{host_address(paths)}/{NETWORK.prefixlen}", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        [sshd, "-f", str(sshd_config), "-E", str(paths.state_dir / "log" / "sshd.log")],
    ]


_SSHD_CONFIG = """\
# sshd of vmportal lab host {name}; rewritten by every networked `lab up`.
ListenAddress {address}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
"""


def write_known_hosts(hosts: list[HostPaths]) -> None:
    """Pin the key of every host that has one at its address: the dashboard accepts no other."""
    lines = []
    for paths in hosts:
        with suppress(FileNotFoundError):
            public_key = (paths.ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"{host_address(paths)} {public_key[0]} {public_key[1]}\n")
    KNOWN_HOSTS.write_text("".join(lines))


def stop_network() -> None:
    """Remove this machine's veth and the bridge's namespace, with the hosts' links still in it."""
    if _link_exists(UPLINK):
        run(["ip", "link", "delete", UPLINK])  # and its peer with it
    namespace = _keeper_namespace()
    if namespace:
        terminate(processes_in_namespace(namespace))  # the keeper: its namespaces go with it
    shutil.rmtree(NETWORK_RUN_DIR, ignore_errors=True)


def leftovers() -> list[str]:
    """What stop_network would remove, if anything is still there."""
    found = [f"link {UPLINK}"] if _link_exists(UPLINK) else []
    namespace = _keeper_namespace()
    return found + ([f"processes {processes_in_namespace(namespace)}"] if namespace else [])


def _keeper_namespace() -> str | None:
    """The namespace ids of the bridge's keeper while it runs; never those this program runs in."""
    keeper = read_pid(_KEEPER_PID_FILE)
    namespace = namespace_of(keeper) if keeper else None
    if keeper is None or namespace is None or namespace == namespace_of(os.getpid()):
        return None
    try:
        recorded = _KEEPER_NAMESPACE_FILE.read_text().strip()
    except FileNotFoundError:  # a crash before it was recorded: only the keeper names its pid file
        return namespace if str(_KEEPER_PID_FILE) in _command_line(keeper) else None
    return namespace if namespace == recorded else None


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


# Inside each host: where lab.delay takes the connections a slow link delays. Below every host's display
# range (5900 + 100·(N−1) onwards): 7999 was lab21's last display port.
RELAY_PORT = 5899
_RELAY = Path(__file__).with_name("delay.py")


def set_link(paths: HostPaths, *, delay_ms: int = 0, silent: bool = False) -> None:
    """Make a host's link slow, silent, or normal again (neither), as the fault tests need.

    Slow: every TCP connection arriving on it from then on goes through lab.delay, `delay_ms` each
    way (no netem on this kernel). Silent: every packet arriving on it is dropped and nothing is
    closed, as when a host's link dies. The rules live in the host's own network namespace.
    """
    libvirtd = read_pid(paths.libvirtd_pid_file)
    if libvirtd is None or not is_networked(libvirtd):
        raise LabError(f"{paths.name} is not running on the lab network")
    inside = ["nsenter", f"--target={libvirtd}", "--net", "--mount", "--uts"]
    run([*inside, "iptables", "-F", "INPUT"])
    run([*inside, "iptables", "-t", "nat", "-F", "PREROUTING"])
    relay_pid_file = paths.run_dir / "delay.pid"
    relay = read_pid(relay_pid_file)
    if relay is not None:
        terminate([relay])
        relay_pid_file.unlink()
    if silent:
        run([*inside, "iptables", "-A", "INPUT", "-i", "eth0", "-j", "DROP"])
    if delay_ms:
        # In the host's mount namespace too, so that `down` stops it with the host's other processes. Its
        # complaints (a peer reset while a chunk waits) go to the host's log, not to whoever slowed the link.
        with (paths.state_dir / "log" / "delay.log").open("ab") as log:
            started = subprocess.Popen([*inside, sys.executable, str(_RELAY), str(RELAY_PORT), str(delay_ms)],  # noqa: S603
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                       start_new_session=True)
        if started.stdout is None or started.stdout.readline().strip() != b"ready":
            started.kill()
            raise LabError(f"the delaying relay of {paths.name} did not start")
        relay_pid_file.write_text(f"{started.pid}\n")
        run([*inside, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "tcp",
             "-j", "REDIRECT", "--to-ports", str(RELAY_PORT)])
