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
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.tcp import Connection

from vmportal.origins import ASGIApp, Scope

SCOPE_KEY = "frames"


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

    def write(self, text: str) -> bool:
        """Sends `text`, or returns False for the caller to send it the ordinary way."""
        protocol, transport = self._protocol, self._protocol.transport
        if (protocol.state != protocol.STATE_OPEN or not isinstance(transport, Connection) or transport.TLS
                or not transport.connected or transport.disconnecting):
            return False
        frame = text_frame(text)
        if transport._tempDataLen or len(transport.dataBuffer) > transport.offset:  # earlier bytes wait: after them
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
