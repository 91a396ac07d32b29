"""Consoles of guests whose displays listen on a remote host's own loopback or unix socket, through the
real proxy and one multiplexed SSH connection to the host (a networked lab instance of its own).

The host is registered with its qemu+ssh URI only: the proxy's machine cannot reach the host's
loopback, so a console that works went through SSH.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import lab
from tests.integration.helpers import lab_instance, virsh
from tests.support.consoles import (
    ClientWebSocket,
    ConsoleStack,
    Stream,
    read_framebuffer_update,
    request_frame,
    rfb_handshake,
    wait_for,
)

pytestmark = pytest.mark.integration

INSTANCE = "3"
ORIGIN = "http://127.0.0.1:8000"
USER = "sasha"
CONSOLES_AT_ONCE = 10
# Guests with no disk: SeaBIOS says so on screen, which is all a console needs, at little CPU.
GUESTS = {
    "ssh-vnc": "<graphics type='vnc' autoport='yes' passwd='proxy1'>"
    "<listen type='address' address='127.0.0.1'/></graphics>",
    "ssh-spice": "<graphics type='spice' autoport='yes'><listen type='address' address='127.0.0.1'/></graphics>",
    "ssh-socket": "<graphics type='vnc'><listen type='socket'/></graphics>",
}


def _guest_xml(name: str, graphics: str) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices>{graphics}<video><model type='vga'/></video>"
        "<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>"
    )


@dataclass
class SshLab:
    host: lab.LabHost  # as the portal reaches it: qemu+ssh
    address: str  # the host's address on the lab network
    stack: ConsoleStack
    proxy_port: int
    uuids: dict[str, str]
    session: str

    @property
    def control_dir(self) -> Path:
        return self.stack.var_dir / "ssh"

    def tickets(self, name: str, consoles: int = 1) -> list[str]:
        return self.stack.tickets(USER, self.host.name, self.uuids[name], consoles=consoles)

    def open(self, token: str) -> Stream:
        ws = ClientWebSocket({"Cookie": f"sessionid={self.session}"})
        return Stream(ws.open(f"ws://127.0.0.1:{self.proxy_port}/websockify?token={token}", origin=ORIGIN))

    def exit_masters(self) -> None:
        for control in self.control_dir.glob("*.sock"):
            subprocess.run(
                ["ssh", "-S", str(control), "-O", "exit", "--", self.address],
                capture_output=True,
                timeout=10,
                check=False,
            )


@pytest.fixture(scope="module")
def ssh_lab(lab_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    stack = ConsoleStack(
        tmp_path_factory.mktemp("ssh-consoles"),
        settings={"VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0", "VMPORTAL_CONSOLE_OPEN_LIMIT": "0"},
    )
    try:
        name, unix_uri, ssh_uri, _tls_uri = (
            lab_instance(INSTANCE, "up", "--hosts", "1", "--no-demo").splitlines()[0].split("\t")
        )
        local = lab.LabHost(name=name, uri=unix_uri)
        for guest, graphics in GUESTS.items():
            created = subprocess.run(
                ["virsh", "--connect", unix_uri, "create", "/dev/stdin"],
                input=_guest_xml(guest, graphics),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert created.returncode == 0, created.stderr
        uuids = {guest: virsh(local, "domuuid", guest) for guest in GUESTS}
        host = lab.LabHost(name=f"{name}-ssh", uri=ssh_uri)
        stack.setup({host.name: host.uri})
        stack.user(USER, grants=tuple((host.name, uuid) for uuid in uuids.values()))
        address = ssh_uri.split("@", 1)[1].split("/", 1)[0]
        ssh_lab = SshLab(host, address, stack, stack.proxy(), uuids, stack.login(USER))
        yield ssh_lab
        ssh_lab.exit_masters()
    finally:
        stack.stop()
        lab_instance(INSTANCE, "down")


def test_a_vnc_display_on_the_hosts_loopback_shows_its_screen(ssh_lab: SshLab) -> None:
    stream = ssh_lab.open(ssh_lab.tickets("ssh-vnc")[0])
    width, height, desktop = rfb_handshake(stream)  # security None: the proxy answered the display's password
    assert "ssh-vnc" in desktop and (width, height) >= (640, 400)

    def screen_shows_something() -> bool:
        request_frame(stream, width, height)
        pixels = read_framebuffer_update(stream, width, height)
        return len({pixels[i : i + 4] for i in range(0, len(pixels), 4)}) > 1

    wait_for(screen_shows_something, 20, "the screen stayed blank")
    stream.ws.close()


def test_consoles_opened_at_once_share_one_ssh_connection(ssh_lab: SshLab) -> None:
    tokens = ssh_lab.tickets("ssh-vnc", consoles=CONSOLES_AT_ONCE)
    ssh_lab.exit_masters()  # they open together with no connection yet: one login, not one each
    with ThreadPoolExecutor(CONSOLES_AT_ONCE) as pool:
        streams = list(pool.map(ssh_lab.open, tokens))
    screens = [rfb_handshake(stream) for stream in streams]

    # Every SSH connection to the host from this machine, by owner, once the proxy processes dropped
    # their libvirt connections: the master alone, while the ten consoles are mux clients without one.
    wait_for(
        lambda: len(_ssh_connections(ssh_lab.address)) == 1,
        15,
        f"not one SSH connection: {_ssh_connections(ssh_lab.address)}",
    )
    [owner] = _ssh_connections(ssh_lab.address).values()
    assert "-M" in owner and str(ssh_lab.control_dir) in " ".join(owner)
    assert len(_channels(ssh_lab)) == CONSOLES_AT_ONCE

    for stream, (width, height, _name) in zip(streams, screens, strict=True):  # each one still relays
        request_frame(stream, width, height)
        assert len(read_framebuffer_update(stream, width, height)) == width * height * 4
        stream.ws.close()
    wait_for(lambda: not _channels(ssh_lab), 10, "an ssh channel outlived its console")


def test_a_vnc_display_on_the_hosts_unix_socket_opens(ssh_lab: SshLab) -> None:
    stream = ssh_lab.open(ssh_lab.tickets("ssh-socket")[0])
    assert "ssh-socket" in rfb_handshake(stream)[2]
    assert list(ssh_lab.control_dir.glob("*.fwd")) == []  # the forward served one connection and went
    stream.ws.close()


def test_a_spice_display_on_the_hosts_loopback_answers_the_link(ssh_lab: SshLab) -> None:
    stream = ssh_lab.open(ssh_lab.tickets("ssh-spice")[0])
    # SpiceLinkHeader (magic, protocol 2.2, size) and SpiceLinkMess for the main channel, no capabilities.
    body = struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18)
    stream.write(b"REDQ" + struct.pack("<III", 2, 2, len(body)) + body)
    magic, major, _minor, size = struct.unpack("<4sIII", stream.read(16))
    assert (magic, major) == (b"REDQ", 2)
    error = struct.unpack("<I", stream.read(size)[:4])[0]
    assert error == 0  # SPICE_LINK_ERR_OK: the server's public key follows
    stream.ws.close()


def _channels(ssh_lab: SshLab) -> list[list[str]]:
    """Command lines of the mux clients (`ssh -S <control socket> ... -W`) of the lab's control directory."""
    channels = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "-W" in command and any(arg.startswith(f"{ssh_lab.control_dir}/") for arg in command):
                channels.append(command)
    return channels


def _ssh_connections(address: str) -> dict[int, list[str]]:
    """Established TCP connections from this network namespace to address:22 -> their owner's command line."""
    remote = "".join(f"{int(part):02X}" for part in reversed(address.split("."))) + ":0016"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == remote and fields[3] == "01":  # ESTABLISHED
            inodes.add(int(fields[9]))
    owners: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                    owners[int(link[8:-1])] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
    return owners
