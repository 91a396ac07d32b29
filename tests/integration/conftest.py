"""A relay socket in front of a lab host, for tests that break or silence a connection the way a host
going away does, without touching the shared lab's daemons."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab
from domains import virt


class Relay:
    """A unix socket that forwards every connection to `target`; `cut()` breaks the open ones, and
    `silence()` leaves them open but drops what they carry (connections made afterwards flow again)."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.uri = f"qemu+unix:///system?socket={path}"
        self.streams: list[socket.socket] = []
        self.muted: frozenset[socket.socket] = frozenset()
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

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self.muted:
                    sink.sendall(data)
        except OSError:
            pass

    def silence(self) -> None:
        self.muted = frozenset(self.streams)

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
    """lab1 behind a relay; the dashboard's connection to it is dropped afterwards."""
    relay = Relay(tmp_path / "relay.sock", lab_hosts[0].socket_uri.split("socket=", 1)[1])
    try:
        yield relay
    finally:
        virt.pool.discard(relay.uri)
        relay.close()
