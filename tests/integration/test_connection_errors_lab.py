"""A connection that breaks under a pooled libvirt connection is an unreachable host, and is reopened.

The dashboard reaches lab1 through a relay socket this test owns; cutting the relay's streams breaks
the connection the way a host going away does, without touching the shared lab's daemons.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab
from domains import virt
from domains.virt.connections import connection

pytestmark = pytest.mark.integration


class Relay:
    """A unix socket that forwards every connection to `target`; `cut()` breaks the open ones."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.uri = f"qemu+unix:///system?socket={path}"
        self.streams: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.streams += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for stream in self.streams:
            with contextlib.suppress(OSError):
                stream.shutdown(socket.SHUT_RDWR)
            stream.close()
        self.streams.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def relay(lab_hosts: list[lab.LabHost], tmp_path: Path) -> Iterator[Relay]:
    relay = Relay(tmp_path / "relay.sock", lab_hosts[0].uri.split("socket=", 1)[1])
    try:
        yield relay
    finally:
        virt.pool.discard(relay.uri)
        relay.close()


def test_a_connection_broken_mid_use_is_host_unreachable_and_the_next_call_reconnects(relay: Relay):
    with connection(relay.uri) as conn:
        assert conn.getHostname() == "lab1"
    with pytest.raises(virt.HostUnreachable) as caught, connection(relay.uri) as conn:
        relay.cut()
        conn.listAllDomains()  # libvirt: "internal error: client socket is closed" (RPC), or "Cannot write data"
    assert caught.value.redacted_message == "The host cannot be reached right now."
    assert caught.value.full_message.startswith("The host cannot be reached right now. libvirt: ")

    with connection(relay.uri) as conn:  # the broken connection was dropped: a fresh one works
        assert conn.getHostname() == "lab1"
