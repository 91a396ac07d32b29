"""Consoles of guests on a TLS host of the lab network, through the real console proxy.

The even host of a networked lab is a "tls" host (lab.network.transport_of): its displays listen on
its address, and QEMU demands VNC over TLS (VeNCrypt x509) with a client certificate from the lab's CA.
Registered with its qemu+tls:// URI, the portal's proxy presents the certificate of that URI's
pkipath=, and the browser sees plain RFB with security type None. This module runs a lab instance of
its own and takes it down at the end.
"""

from __future__ import annotations

import socket
import struct
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import lab
from lab.network import transport_of
from lab.paths import HostPaths
from tests.integration.helpers import lab_instance, virsh
from tests.support.consoles import (
    ClientWebSocket,
    ConsoleStack,
    Stream,
    close_reason,
    read_framebuffer_update,
    request_frame,
    rfb_handshake,
    wait_for,
)

pytestmark = pytest.mark.integration

INSTANCE = "4"
ORIGIN = "http://127.0.0.1:8000"
USER = "tess"
GUEST = """<domain type='qemu'>
  <name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <graphics type='{kind}' autoport='yes'{password}/>
    <video><model type='vga'/></video>
  </devices>
</domain>"""


@dataclass(frozen=True)
class TlsHost:
    local: lab.LabHost  # its unix socket, for virsh
    tls: lab.LabHost  # as the portal registers it: qemu+tls://<address>/system?pkipath=...


@pytest.fixture(scope="module")
def tls_host(lab_session: None) -> Iterator[TlsHost]:
    try:
        rows = [
            line.split("\t")
            for line in lab_instance(INSTANCE, "up", "--hosts", "2", "--no-demo").splitlines()
        ]
        [(name, unix_uri, _ssh_uri, tls_uri)] = [row for row in rows if transport_of(HostPaths(row[0])) == "tls"]
        yield TlsHost(lab.LabHost(name, unix_uri), lab.LabHost(f"{name}-tls", tls_uri))
    finally:
        lab_instance(INSTANCE, "down")


@pytest.fixture(scope="module")
def guests(tls_host: TlsHost, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Transient paused guests on the TLS host (QEMU serves the screen while paused): kind -> UUID."""
    made = {}
    for kind, graphics, password in (
        ("vnc", "vnc", ""),
        ("vnc-password", "vnc", " passwd='s3cretpw'"),
        ("spice", "spice", ""),
    ):
        uuid = str(uuidlib.uuid4())
        xml = tmp_path_factory.mktemp("guests") / f"{kind}.xml"
        xml.write_text(GUEST.format(name=f"tls-{kind}", uuid=uuid, kind=graphics, password=password))
        virsh(tls_host.local, "create", str(xml), "--paused")
        made[kind] = uuid
    return made


@pytest.fixture(scope="module")
def stack(
    tls_host: TlsHost, guests: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    stack = ConsoleStack(
        tmp_path_factory.mktemp("tls-consoles"),
        settings={"VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0", "VMPORTAL_CONSOLE_OPEN_LIMIT": "0"},
    )
    hosts = (tls_host.tls, tls_host.local)
    stack.setup({host.name: host.uri for host in hosts})
    stack.user(USER, grants=tuple((host.name, uuid) for host in hosts for uuid in guests.values()))
    stack.settings["port"] = str(stack.proxy())
    yield stack
    stack.stop()


def open_console(stack: ConsoleStack, host: lab.LabHost, uuid: str, session: str | None = None) -> Stream:
    token = stack.tickets(USER, host.name, uuid)[0]
    ws = ClientWebSocket({"Cookie": f"sessionid={session or stack.login(USER)}"})
    return Stream(ws.open(f"ws://127.0.0.1:{stack.settings['port']}/websockify?token={token}", origin=ORIGIN))


def display_address(host: lab.LabHost, uuid: str, kind: str) -> tuple[str, int]:
    """Where the display listens, as `virsh domdisplay` says: the host's address, not its loopback."""
    display = virsh(host, "domdisplay", "--type", kind, uuid)  # vnc://10.213.4.12:0 or spice://10.213.4.12:6002
    address, port = display.split("://", 1)[1].rsplit(":", 1)
    return address, int(port) + (5900 if kind == "vnc" else 0)


@pytest.mark.parametrize("guest", ["vnc", "vnc-password"])
def test_qemu_offers_plain_clients_only_vencrypt(tls_host: TlsHost, guests: dict[str, str], guest: str) -> None:
    address, port = display_address(tls_host.local, guests[guest], "vnc")
    assert address == tls_host.tls.uri.split("//", 1)[1].split("/", 1)[0]  # the host's management address
    with socket.create_connection((address, port), timeout=10) as plain:
        assert plain.recv(12) == b"RFB 003.008\n"
        plain.sendall(b"RFB 003.008\n")
        count = plain.recv(1)[0]
        assert list(plain.recv(count)) == [19]  # VeNCrypt, nothing else


@pytest.mark.parametrize("guest", ["vnc", "vnc-password"])
def test_the_browser_gets_plain_rfb_and_the_screen_of_a_tls_display(
    stack: ConsoleStack, tls_host: TlsHost, guests: dict[str, str], guest: str
) -> None:
    stream = open_console(stack, tls_host.tls, guests[guest])
    width, height, desktop = rfb_handshake(stream)  # security None: no certificate or password in the browser
    assert f"tls-{guest}" in desktop
    request_frame(stream, width, height)
    assert len(read_framebuffer_update(stream, width, height)) == width * height * 4
    stream.ws.close()


def test_logout_closes_a_console_relayed_through_tls(
    stack: ConsoleStack, tls_host: TlsHost, guests: dict[str, str]
) -> None:
    session = stack.login(USER)
    stream = open_console(stack, tls_host.tls, guests["vnc"], session)
    width, height, _ = rfb_handshake(stream)
    stack.shell(
        f"from django.contrib.sessions.models import Session\nSession.objects.filter(session_key={session!r}).delete()"
    )
    assert "4001" in close_reason(stream, width, height)  # ended by the portal, through the TLS relay


def test_a_spice_display_on_the_tls_host_links_through_the_proxy(
    stack: ConsoleStack, tls_host: TlsHost, guests: dict[str, str]
) -> None:
    stream = open_console(stack, tls_host.tls, guests["spice"])
    # SpiceLinkHeader (REDQ, protocol 2.2, size) and SpiceLinkMess for the main channel, no capabilities.
    stream.write(b"REDQ" + struct.pack("<III", 2, 2, 18) + struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18))
    magic, major, _minor, _size = struct.unpack("<4sIII", stream.read(16))
    error = struct.unpack("<I", stream.read(4))[0]
    assert (magic, major, error) == (b"REDQ", 2, 0)  # SPICE_LINK_ERR_OK: the server sends its public key next
    stream.ws.close()


def test_reached_through_a_uri_without_tls_the_display_is_refused_saying_why(
    stack: ConsoleStack, tls_host: TlsHost, guests: dict[str, str]
) -> None:
    # The proxy handshakes with a display that has a password whatever the URI (one without one it relays
    # untouched: the browser is then offered VeNCrypt alone, which no browser console speaks).
    uuid = guests["vnc-password"]
    with pytest.raises(ConnectionError, match="1011"):
        rfb_handshake(open_console(stack, tls_host.local, uuid))  # the same display, through the unix socket
    closes = (
        "from audit.models import AuditEntry\n"
        f"result = list(AuditEntry.objects.filter(domain_uuid={uuid!r}, host_name={tls_host.local.name!r},"
        " action='console.close').values_list('message', flat=True))\n"
    )
    wait_for(lambda: stack.shell(closes), 10, "no close audited")
    assert "demands TLS (VeNCrypt)" in stack.shell(closes)[0]
