"""TLS towards a display through memory buffers (ssl.SSLObject), over a socket that stays a plain one.

The proxy's relay loop polls sockets, which misses what an SSL socket has already decrypted and
buffered. So the proxy relays to one end of a socket pair, and `relay` carries bytes between the
other end and the display: one thread, one poll loop that owns every read and write of the TLS
state, and the display's socket stays the plain one the console re-check can shut down.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import TypeVar

from domains import virt

from . import polling

CHUNK = 65536
T = TypeVar("T")


def client_context(material: virt.TlsMaterial) -> ssl.SSLContext:
    """A client context that trusts only the host's CA and presents libvirt's client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer's certificate and name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=material.ca_certificate)
    context.load_cert_chain(material.client_certificate, material.client_key)
    return context


class TlsChannel:
    """A TLS client session over a connected socket; `recv` and `sendall` as a socket's, for the handshake."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_name: str) -> None:
        self.sock = sock
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)
        self._buffered = b""  # decrypted and not yet read

    def handshake(self) -> None:
        self._complete(self._tls.do_handshake)

    def recv(self, count: int) -> bytes:
        """Up to count bytes from the display; b"" once it has closed the session."""
        if not self._buffered:
            self._buffered = self._complete(lambda: self._tls.read(CHUNK))
        data, self._buffered = self._buffered[:count], self._buffered[count:]
        return data

    def sendall(self, data: bytes) -> None:
        self._complete(lambda: self._tls.write(data))

    def _complete(self, operation: Callable[[], T]) -> T:
        """Runs a TLS operation to its end on the blocking socket, feeding it what the display sends."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._send_pending()
                received = self.sock.recv(CHUNK)
                if received:
                    self._incoming.write(received)
                else:
                    self._incoming.write_eof()
                continue
            self._send_pending()
            return result

    def _send_pending(self) -> None:
        if pending := self._outgoing.read():
            self.sock.sendall(pending)

    def relay(self, plain: socket.socket) -> None:
        """Carries bytes between plain and the display until either closes (or fails); closes nothing."""
        self.sock.setblocking(False)
        plain.setblocking(False)
        to_plain, self._buffered = self._buffered, b""
        to_display = self._outgoing.read()
        display_open = True
        try:
            while display_open or to_plain:
                # Read a side only while what it sent last has gone on: a slow reader slows its writer.
                readers = [
                    sock
                    for sock, waiting in ((self.sock, to_plain or not display_open), (plain, to_display))
                    if not waiting
                ]
                writers = [sock for sock, waiting in ((plain, to_plain), (self.sock, to_display)) if waiting]
                readable, writable = polling.ready(readers, writers)
                if self.sock in readable:
                    received = self.sock.recv(CHUNK)
                    if not received:
                        return
                    self._incoming.write(received)
                    decrypted, display_open = self._decrypted()
                    to_plain += decrypted
                if plain in readable:
                    received = plain.recv(CHUNK)
                    if not received:
                        return
                    self._tls.write(received)
                to_display += self._outgoing.read()  # reading can answer too (TLS 1.3 key updates)
                if plain in writable:
                    to_plain = to_plain[plain.send(to_plain) :]
                if self.sock in writable:
                    to_display = to_display[self.sock.send(to_display) :]
        except (OSError, ValueError):  # ValueError: a socket closed by another thread before the poll
            return

    def _decrypted(self) -> tuple[bytes, bool]:
        """What the display's records so far decrypt to, and whether its session is still open."""
        data = b""
        while True:
            try:
                chunk = self._tls.read(CHUNK)
            except ssl.SSLWantReadError:
                return data, True
            if not chunk:
                return data, False
            data += chunk
