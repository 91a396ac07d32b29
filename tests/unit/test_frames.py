"""Live pushes written straight onto daphne's sockets (vmportal.frames): the frames, and when they are not."""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from typing import Any

import pytest
from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from vmportal import frames


def parsed(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of one unmasked frame, read as a browser reads it."""
    first, second = frame[0], frame[1]
    assert not second & 0x80, "a server's frames are not masked"
    length, start = second & 0x7F, 2
    if length == 126:
        length, start = struct.unpack("!H", frame[2:4])[0], 4
    elif length == 127:
        length, start = struct.unpack("!Q", frame[2:10])[0], 10
    assert len(frame) == start + length
    return first, frame[start:]


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 70000])
def test_a_text_frame_carries_its_text_whole_at_every_length_boundary(length: int) -> None:
    text = ("é" + "x" * length)[:length] if length else ""
    first, payload = parsed(frames.text_frame(text))
    assert first == 0x81  # FIN, text
    assert payload.decode() == text


def daphne_send() -> tuple[functools.partial, WebSocketProtocol]:
    protocol = WebSocketProtocol()
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # not started
    return functools.partial(server.handle_reply, protocol), protocol


def test_the_writer_is_found_behind_daphnes_send_only() -> None:
    send, _protocol = daphne_send()
    assert isinstance(frames.frame_writer(send), frames.FrameWriter)

    async def another_servers_send(message: dict) -> None:
        raise AssertionError("not called")

    assert frames.frame_writer(another_servers_send) is None
    assert frames.frame_writer(functools.partial(another_servers_send, {})) is None


class _Transport:
    """Twisted's TCP connection as the writer reads it, over a real socket pair."""

    TLS = False
    connected = True
    disconnecting = False

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.offset = 0
        self.buffered: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.buffered.append(data)
        self._tempDataLen += len(data)


@pytest.fixture
def connected(monkeypatch) -> tuple[frames.FrameWriter, WebSocketProtocol, _Transport, socket.socket]:
    monkeypatch.setattr(frames, "Connection", _Transport)
    ours, browser = socket.socketpair()
    ours.setblocking(False)
    browser.settimeout(2)
    _send, protocol = daphne_send()
    transport = _Transport(ours)
    protocol.transport = transport
    protocol.state = AutobahnProtocol.STATE_OPEN
    return frames.FrameWriter(protocol), protocol, transport, browser


def test_an_open_socket_is_sent_the_frame_at_once(connected) -> None:
    writer, _protocol, transport, browser = connected
    assert writer.write("<tr>a row</tr>")
    assert parsed(browser.recv(4096)) == (0x81, b"<tr>a row</tr>")
    assert transport.buffered == []


def test_a_frame_waits_behind_what_twisted_still_holds(connected) -> None:
    writer, _protocol, transport, browser = connected
    transport.write(b"earlier bytes")
    assert writer.write("later")
    assert transport.buffered == [b"earlier bytes", frames.text_frame("later")]  # in order, not sent past them


def test_what_the_socket_does_not_take_is_left_to_twisted(connected) -> None:
    writer, _protocol, transport, browser = connected
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    text = "x" * 4_000_000
    assert writer.write(text)
    frame = frames.text_frame(text)
    assert transport.buffered and frame.endswith(transport.buffered[0])
    assert len(transport.buffered[0]) < len(frame)


@pytest.mark.parametrize("how", ["closing", "TLS", "disconnecting"])
def test_a_socket_not_plainly_open_is_sent_the_ordinary_way(connected, how: str) -> None:
    writer, protocol, transport, browser = connected
    if how == "closing":
        protocol.state = AutobahnProtocol.STATE_CLOSING
    elif how == "TLS":
        transport.TLS = True
    else:
        transport.disconnecting = True
    assert not writer.write("a row")
    assert transport.buffered == []
    browser.setblocking(False)
    with pytest.raises(BlockingIOError):
        browser.recv(10)


async def test_the_middleware_offers_the_writer_to_daphne_s_websockets_alone() -> None:
    seen: list[dict] = []

    async def consumer(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    middleware = frames.DirectFrames(consumer)
    send, _protocol = daphne_send()
    await middleware({"type": "websocket"}, None, send)

    async def another_servers_send(message: dict) -> None:
        raise AssertionError("not called")

    await middleware({"type": "websocket"}, None, another_servers_send)
    assert isinstance(seen[0][frames.SCOPE_KEY], frames.FrameWriter)
    assert frames.SCOPE_KEY not in seen[1]


async def test_a_page_past_its_backlog_is_dropped_frames_until_all_it_waited_for_is_sent(
    connected, monkeypatch
) -> None:
    writer, _protocol, transport, _browser = connected
    monkeypatch.setattr(frames, "BACKLOG_CHECK_SECONDS", 0.01)
    caught_up: list[bool] = []
    writer.watch_backlog(lambda: caught_up.append(True))
    transport.write(b"x" * (frames.BACKLOG_BYTES + 1))  # a browser that stopped reading
    assert writer.write("a row") and writer.behind
    assert writer.write("another row")
    assert transport.buffered == [b"x" * (frames.BACKLOG_BYTES + 1)]  # both dropped, nothing added
    await asyncio.sleep(0.05)
    assert caught_up == []  # still waiting
    transport.buffered.clear()
    transport._tempDataLen = 0  # Twisted sent it all
    await asyncio.sleep(0.05)
    assert caught_up == [True] and not writer.behind
    assert writer.write("the next row") and transport.buffered == []


def test_a_writer_nobody_watches_never_drops(connected) -> None:
    writer, _protocol, transport, _browser = connected
    transport.write(b"x" * (frames.BACKLOG_BYTES + 1))
    assert writer.write("a row") and not writer.behind
    assert transport.buffered[-1] == frames.text_frame("a row")
