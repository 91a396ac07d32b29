"""The proxy answers a VNC display's password itself, so no password ever reaches the browser.

For a VNC display with a password, the proxy speaks the start of RFB 3.8 (RFC 6143, 7.1-7.2) to both
sides: VNC authentication towards the display, with the response computed inside domains.virt from
the password libvirt holds, and security type None towards the browser. Everything after the
security handshake is relayed untouched. Displays without a password are relayed from the first byte.
"""

from __future__ import annotations

import select
import socket
import struct
from typing import TYPE_CHECKING, NoReturn

from websockify.websocket import WebSocketWantReadError

from domains import virt

if TYPE_CHECKING:
    from .proxy import ConsoleRequestHandler
    from .services import OpenConsole

VERSION = b"RFB 003.008\n"
NONE, VNC_AUTH = 1, 2
TIMEOUT = 10.0


class DisplayRefused(Exception):
    """The display or the browser did not complete the security handshake."""


def authenticate_display(handler: ConsoleRequestHandler, target: socket.socket,
                         console: OpenConsole[virt.GraphicsEndpoint]) -> None:
    endpoint = console.endpoint
    if endpoint.kind != "vnc" or not endpoint.has_password:
        return
    browser = _Browser(handler)
    target.settimeout(TIMEOUT)
    try:
        if not _read(target, 12).startswith(b"RFB 003.00"):
            raise DisplayRefused("not an RFB 3.x display")
        browser.write(VERSION)
        if browser.read(12) != VERSION:
            raise DisplayRefused("the browser does not speak RFB 3.8")
        target.sendall(VERSION)
        types = _read(target, _read(target, 1)[0] or _failure(target))
        if VNC_AUTH in types:
            target.sendall(bytes([VNC_AUTH]))
            target.sendall(virt.vnc_auth_response(console.ticket.host.uri, str(console.ticket.domain_uuid),
                                                  _read(target, 16)))
        elif NONE in types:
            target.sendall(bytes([NONE]))
        else:
            raise DisplayRefused(f"no security type the proxy can answer among {list(types)}")
        if struct.unpack(">I", _read(target, 4))[0] != 0:
            _failure(target)
        browser.write(bytes([1, NONE]))
        if browser.read(1) != bytes([NONE]):
            raise DisplayRefused("the browser chose another security type")
        browser.write(struct.pack(">I", 0))
    except (OSError, struct.error) as error:
        raise DisplayRefused(str(error) or type(error).__name__) from error
    finally:
        target.settimeout(None)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise DisplayRefused("the display closed the connection")
        data += chunk
    return data


def _failure(target: socket.socket) -> NoReturn:
    length = struct.unpack(">I", _read(target, 4))[0]
    reason = _read(target, min(length, 1024)).decode("utf-8", "replace")
    raise DisplayRefused(f"the display said: {reason}")


class _Browser:
    """Whole messages of the RFB handshake over the browser's websocket."""

    def __init__(self, handler: ConsoleRequestHandler) -> None:
        self.handler, self.buffer = handler, b""

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not select.select([self.handler.request], [], [], TIMEOUT)[0]:
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
            select.select([], [self.handler.request], [], TIMEOUT)
            pending = self.handler.send_frames()
