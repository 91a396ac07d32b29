"""The proxy completes a VNC display's security handshake itself, so no password or certificate reaches the browser.

For a VNC display with a password, or on a TLS host, the proxy speaks the start of RFB 3.8 (RFC 6143,
7.1-7.2) to both sides. Towards the display: VNC authentication, with the response computed inside
domains.virt from the password libvirt holds; or VeNCrypt (security type 19) with an x509 subtype, a TLS
session presenting libvirt's client certificate for that host and trusting only its CA, then VNC
authentication inside it if the subtype asks for it. Towards the browser: security type None. Everything
after the security handshake is relayed untouched (through the TLS session when there is one). Other
displays are relayed from the first byte.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, Protocol

from websockify.websocket import WebSocketWantReadError

from domains import virt

from . import polling
from .tls import TlsChannel, client_context

if TYPE_CHECKING:
    from .proxy import ConsoleRequestHandler
    from .services import OpenConsole

VERSION = b"RFB 003.008\n"
NONE, VNC_AUTH, VENCRYPT = 1, 2, 19
VENCRYPT_VERSION = bytes([0, 2])
X509_NONE, X509_VNC = 260, 261  # the VeNCrypt subtypes that authenticate the display by its certificate
TIMEOUT = 10.0

AnswerChallenge = Callable[[bytes], bytes]


class DisplayRefused(Exception):
    """The display or the browser did not complete the security handshake."""


class _Stream(Protocol):
    def recv(self, count: int, /) -> bytes: ...

    def sendall(self, data: bytes, /) -> None: ...


def authenticate_display(
    handler: ConsoleRequestHandler, target: socket.socket, console: OpenConsole[virt.GraphicsEndpoint]
) -> TlsChannel | None:
    """Completes the security handshake when the display needs the proxy for it; the TLS session to relay
    through, if the display demanded one."""
    endpoint = console.endpoint
    if endpoint.kind != "vnc" or not (endpoint.has_password or endpoint.tls):
        return None
    uri, uuid = console.ticket.host.uri, str(console.ticket.domain_uuid)
    browser = _Browser(handler)
    target.settimeout(TIMEOUT)
    try:
        channel = secure_display(target, endpoint, lambda challenge: virt.vnc_auth_response(uri, uuid, challenge))
        browser.write(VERSION)
        if browser.read(12) != VERSION:
            raise DisplayRefused("the browser does not speak RFB 3.8")
        browser.write(bytes([1, NONE]))
        if browser.read(1) != bytes([NONE]):
            raise DisplayRefused("the browser chose another security type")
        browser.write(struct.pack(">I", 0))
    except (OSError, struct.error) as error:
        raise DisplayRefused(str(error) or type(error).__name__) from error
    finally:
        target.settimeout(None)
    return channel


def secure_display(
    target: socket.socket, endpoint: virt.GraphicsEndpoint, answer_challenge: AnswerChallenge
) -> TlsChannel | None:
    """The display's side of the handshake, up to its security result; returns its TLS session if it has one."""
    if not _read(target, 12).startswith(b"RFB 003.00"):
        raise DisplayRefused("not an RFB 3.x display")
    target.sendall(VERSION)
    types = _read(target, _read(target, 1)[0] or _failure(target))
    if VENCRYPT in types and endpoint.tls is not None:
        channel, subtype = _vencrypt(target, endpoint.tls)
        try:
            if subtype == X509_VNC:
                _vnc_authentication(channel, answer_challenge)
            _security_result(channel)
        except ssl.SSLError as error:  # with TLS 1.3 a refused client certificate shows here, after the handshake
            raise DisplayRefused(f"the display ended the TLS session: {error.reason or error}") from error
        return channel
    if VNC_AUTH in types:
        target.sendall(bytes([VNC_AUTH]))
        _vnc_authentication(target, answer_challenge)
    elif NONE in types:
        target.sendall(bytes([NONE]))
    elif VENCRYPT in types:
        raise DisplayRefused("the display demands TLS (VeNCrypt), and its host is not registered with a TLS URI")
    else:
        raise DisplayRefused(f"no security type the proxy can answer among {list(types)}")
    _security_result(target)
    return None


def _security_result(display: _Stream) -> None:
    if struct.unpack(">I", _read(display, 4))[0] != 0:
        _failure(display)


def _vnc_authentication(display: _Stream, answer_challenge: AnswerChallenge) -> None:
    display.sendall(answer_challenge(_read(display, 16)))


def _vencrypt(target: socket.socket, material: virt.TlsMaterial) -> tuple[TlsChannel, int]:
    """VeNCrypt 0.2 up to a verified TLS session: the display's certificate is checked, ours presented."""
    target.sendall(bytes([VENCRYPT]))
    offered_version = _read(target, 2)
    if offered_version < VENCRYPT_VERSION:
        raise DisplayRefused(f"the display speaks VeNCrypt {offered_version[0]}.{offered_version[1]}, not 0.2")
    target.sendall(VENCRYPT_VERSION)
    if _read(target, 1) != b"\0":
        raise DisplayRefused("the display refused VeNCrypt 0.2")
    count = _read(target, 1)[0]
    subtypes = struct.unpack(f">{count}I", _read(target, 4 * count))
    subtype = next((choice for choice in (X509_NONE, X509_VNC) if choice in subtypes), None)
    if subtype is None:
        raise DisplayRefused(f"the display offers no VeNCrypt subtype with x509 certificates among {list(subtypes)}")
    target.sendall(struct.pack(">I", subtype))
    if _read(target, 1) != b"\1":
        raise DisplayRefused(f"the display refused the VeNCrypt subtype {subtype} it offered")
    try:
        channel = TlsChannel(target, client_context(material), material.server_name)
    except (OSError, ssl.SSLError) as error:
        raise DisplayRefused(f"the proxy could not load the host's TLS client certificate: {error}") from error
    try:
        channel.handshake()
    except ssl.SSLCertVerificationError as error:
        raise DisplayRefused(f"the display's TLS certificate was refused: {error.verify_message}") from error
    except ssl.SSLError as error:
        raise DisplayRefused(f"the TLS handshake with the display failed: {error.reason or error}") from error
    return channel, subtype


def _read(sock: _Stream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise DisplayRefused("the display closed the connection")
        data += chunk
    return data


def _failure(display: _Stream) -> NoReturn:
    length = struct.unpack(">I", _read(display, 4))[0]
    reason = _read(display, min(length, 1024)).decode("utf-8", "replace")
    raise DisplayRefused(f"the display said: {reason}")


class _Browser:
    """Whole messages of the RFB handshake over the browser's websocket."""

    def __init__(self, handler: ConsoleRequestHandler) -> None:
        self.handler, self.buffer = handler, b""

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not polling.ready([self.handler.request], timeout=TIMEOUT)[0]:
                raise DisplayRefused("the browser did not answer")
            try:
                message = self.handler.request.recvmsg()
            except WebSocketWantReadError:
                continue
            if message is None:
                raise DisplayRefused("the browser closed the connection")
            self.buffer += message
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def write(self, data: bytes) -> None:
        pending = self.handler.send_frames([data])
        while pending:
            polling.ready([], [self.handler.request], TIMEOUT)
            pending = self.handler.send_frames()
