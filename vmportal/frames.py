"""Live pushes written straight to daphne's sockets: each websocket frame made once, sent without a detour.

The live hub sends the same row to every page that shows it. Through ASGI each page's copy crosses
Channels' session wrapper, daphne, autobahn's framing and Twisted's write buffer, which registers the
socket with the event loop to write on the loop's next turn and unregisters it afterwards: about 60 µs
a page, of which the send itself is 15 (1,000 loopback sockets, Twisted on asyncio, as daphne runs).
Here a server's frame, which RFC 6455 leaves unmasked and so is the same bytes for every page, is made
once per text, and written at once with a non-blocking send when nothing waits in Twisted's buffer.
What the socket does not take goes into that buffer; every other case (TLS, a socket not open or
closing, another ASGI server than daphne) takes the ordinary ASGI way. Either way frames stay in order.

DirectFrames, the outermost websocket middleware, finds daphne's protocol behind the ASGI `send` it
is given (daphne passes `partial(Server.handle_reply, protocol)`) and offers it to consumers as
scope["frames"]; consumers.push() uses it.

A page that does not take what it is sent (a stalled browser, a slow link) would otherwise grow Twisted's
buffer without bound: once more than BACKLOG_BYTES wait for it, the writer counts as behind, frames for
it are dropped, and once everything waiting has been sent the consumer is told to resync the page.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Callable
from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.tcp import Connection

from vmportal.origins import ASGIApp, Scope

SCOPE_KEY = "frames"
BACKLOG_BYTES = 1 << 20  # unsent bytes waiting for one page before it counts as behind
BACKLOG_CHECK_SECONDS = 0.5  # how often a page behind is looked at again


@functools.lru_cache(maxsize=256)
def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 5.2); pushes share their texts, so their frames."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 127, length)
    return head + payload


class FrameWriter:
    """Text frames onto one daphne websocket's TCP connection, in order with what daphne writes to it."""

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol
        self.behind = False  # more than BACKLOG_BYTES waited to be sent: what is pushed meanwhile is dropped
        self._caught_up: Callable[[], None] | None = None

    def watch_backlog(self, caught_up: Callable[[], None]) -> None:
        """From now on the writer falls behind past BACKLOG_BYTES, and `caught_up` is called once all that
        waited has been sent (the page then missed what was dropped meanwhile)."""
        self._caught_up = caught_up

    def write(self, text: str) -> bool:
        """Sends `text` (or drops it while behind), or returns False for the caller to send it the ordinary way."""
        protocol, transport = self._protocol, self._protocol.transport
        if (protocol.state != protocol.STATE_OPEN or not isinstance(transport, Connection) or transport.TLS
                or not transport.connected or transport.disconnecting):
            return False
        if self.behind:
            return True
        frame = text_frame(text)
        if _waiting(transport):  # earlier bytes wait: after them, unless too many wait
            if self._caught_up is not None and _waiting(transport) > BACKLOG_BYTES:
                self._fall_behind()
            else:
                transport.write(frame)
            return True
        try:
            sent = transport.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:  # the connection failed: Twisted's own write finds out and closes it as it does
            return False
        if sent < len(frame):
            transport.write(frame[sent:])
        return True

    def _fall_behind(self) -> None:
        # Twisted tells its connection's producer when its buffer empties, but daphne's HTTP channel holds
        # that place (it stays the producer of the upgraded connection): the writer looks now and then.
        self.behind = True
        asyncio.get_running_loop().call_later(BACKLOG_CHECK_SECONDS, self._check_caught_up)

    def _check_caught_up(self) -> None:
        transport = self._protocol.transport
        if not transport.connected:
            return
        if _waiting(transport):
            asyncio.get_running_loop().call_later(BACKLOG_CHECK_SECONDS, self._check_caught_up)
            return
        self.behind = False
        if self._caught_up is not None:  # only watch_backlog's writers fall behind
            self._caught_up()


def _waiting(transport: Connection) -> int:
    """The bytes Twisted holds for the connection, not yet handed to the kernel."""
    return transport._tempDataLen + len(transport.dataBuffer) - transport.offset


def frame_writer(send: Any) -> FrameWriter | None:
    """The writer for the websocket behind daphne's ASGI `send`; None for anything else."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    server, protocol = getattr(send.func, "__self__", None), send.args[0]
    if (not isinstance(server, Server) or getattr(send.func, "__name__", "") != "handle_reply"
            or not isinstance(protocol, WebSocketProtocol)):
        return None
    return FrameWriter(protocol)


class DirectFrames:
    """Offers each websocket its FrameWriter in scope["frames"] when daphne serves it (see the module's doc)."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        writer = frame_writer(send)
        await self.inner({**scope, SCOPE_KEY: writer} if writer is not None else scope, receive, send)
