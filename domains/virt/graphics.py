"""The live graphics endpoint of a running domain, read from libvirt when it is asked for.

The console proxy connects only to what this returns: the port QEMU really listens on (from the
live XML, never the persistent one, whose autoport is -1) on the host that runs the guest, through
that host's SSH transport when the display listens on the host's own loopback or unix socket. The
display's own password never leaves this package: `vnc_auth_response` answers a VNC challenge
with it, so the proxy can authenticate to the display without ever holding the password. A VNC
display of a TLS host carries the host's TLS material, in case QEMU demands VeNCrypt.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, not untrusted input
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .connections import connection
from .errors import VirtError
from .transports import SshRoute, TlsMaterial, ssh_route, tls_material

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

KINDS = ("vnc", "spice")
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback
_LOCAL_NAMES = {"", "localhost", "localhost.localdomain"}


class ConsoleUnavailable(VirtError):
    default_message = _("This machine has no display a browser console can open.")


@dataclass(frozen=True, slots=True)
class GraphicsEndpoint:
    """Where the proxy reaches a display: a TCP address and port, or a unix socket, on this machine or,
    with `ssh`, as the host at the end of that SSH route sees them."""

    kind: str  # vnc or spice
    address: str  # "" for a unix socket
    port: int | None
    socket: str  # unix socket path, or ""
    has_password: bool
    run_id: int = 0  # the domain's ID: a new one each time it starts (a restart on the same port too)
    ssh: SshRoute | None = None  # the host's SSH transport, for a display on its loopback or unix socket
    tls: TlsMaterial | None = None  # what the proxy presents if the display demands TLS (VeNCrypt)

    @property
    def key(self) -> str:
        """What a console ticket is bound to; equal keys mean the same display of the same run, same route."""
        where = f"unix:{self.socket}" if self.socket else f"{self.address}:{self.port}"
        via = f" via {self.ssh.key}" if self.ssh else ""
        return f"{self.kind} {where}{via} run {self.run_id}"


def is_local_uri(uri: str) -> bool:
    """Whether the URI's hypervisor runs on this machine (so its loopback is ours)."""
    host = (urlsplit(uri).hostname or "").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address.lower() in _LOCAL_NAMES


def parse_graphics(xml: str, *, uri: str) -> GraphicsEndpoint:
    """The first VNC or SPICE display of a live domain XML, as this machine's proxy reaches it."""
    root = ET.fromstring(xml)  # noqa: S314
    for device in root.iterfind("./devices/graphics"):
        kind = device.get("type", "")
        if kind not in KINDS:
            continue
        listen = device.find("listen")
        listen_type = listen.get("type", "address") if listen is not None else "address"
        has_password = device.get("passwd") is not None
        if listen_type == "socket":
            path = listen.get("socket", "") if listen is not None else ""
            if not path:
                break
            route = None if is_local_uri(uri) else _route_to_host(uri, _("a unix socket"))
            return GraphicsEndpoint(kind, "", None, path, has_password, ssh=route)
        if listen_type != "address":
            break  # type='none' or 'network' without an address: nothing to connect to
        port = int(device.get("port") or "-1")
        if port <= 0:
            if int(device.get("tlsPort") or "-1") > 0:
                raise ConsoleUnavailable(_("This machine's SPICE display only accepts TLS, which the browser "
                                           "console does not speak."))
            break
        address = (listen.get("address", "") if listen is not None else "") or device.get("listen", "")
        if is_local_uri(uri):
            address = _WILDCARDS.get(address, address)
        elif address in _WILDCARDS:
            address = urlsplit(uri).hostname or ""  # listening everywhere: reach it at the host's name
        elif _is_loopback(address):
            return GraphicsEndpoint(kind, address, port, "", has_password,
                                    ssh=_route_to_host(uri, _("its host's loopback")))
        # Whether QEMU demands TLS is in qemu.conf, not in the XML: only the handshake tells.
        return GraphicsEndpoint(kind, address, port, "", has_password, tls=tls_material(uri) if kind == "vnc" else None)
    raise ConsoleUnavailable()


def _route_to_host(uri: str, where: StrPromise) -> SshRoute:
    """The SSH route to a remote host, for a display only the host itself reaches."""
    route = ssh_route(uri)
    if route is None:
        raise ConsoleUnavailable(format_lazy(
            _("This machine's display listens on {where}, which the console proxy reaches only through "
              "the host's SSH transport; the host is not registered with an SSH URI."), where=where))
    return route


def graphics_endpoint(uri: str, uuid: str) -> GraphicsEndpoint:
    """The display a running domain has right now; ConsoleUnavailable when it has none to open."""
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            raise ConsoleUnavailable(_("The machine is not running."))
        # Only the secure XML says whether a password is set; the password itself is not kept.
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        return dataclasses.replace(parse_graphics(xml, uri=uri), run_id=dom.ID())


def _display_password(uri: str, uuid: str) -> str:
    with connection(uri) as conn:
        xml = conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    for device in ET.fromstring(xml).iterfind("./devices/graphics"):  # noqa: S314
        if device.get("type") == "vnc":
            return device.get("passwd") or ""
    return ""


def vnc_auth_response(uri: str, uuid: str, challenge: bytes) -> bytes:
    """The answer to a VNC authentication challenge (RFB 6.2.2), computed with the display's password.

    VNC authentication DES-encrypts the 16-byte challenge with the first eight bytes of the password,
    each byte's bits reversed. The password is read, used and dropped here.
    """
    # DES is what the VNC protocol mandates; it is the display's scheme, not a choice of ours.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    if len(challenge) != 16:
        raise ValueError("a VNC challenge is 16 bytes")
    password = _display_password(uri, uuid).encode("latin-1", "replace")[:8].ljust(8, b"\0")
    key = bytes(int(f"{byte:08b}"[::-1], 2) for byte in password)
    # Triple DES with one key three times over is single DES.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(challenge) + encryptor.finalize()
