"""The console proxy: websockify's request handler, each console served in a thread of one long-lived process.

`ConsoleProxyServer` is websockify's threaded server (`LibProxyServer`): Django is set up once, and a
console costs a thread and its buffers, not a forked process. For each websocket upgrade, in its thread,
`ConsoleRequestHandler` makes its own token and auth plugins and calls them as websockify would:
  1. `ConsoleTokenPlugin.lookup(token)` (the `token` query parameter) -> the live (host, port) of the
     ticket's display, read from libvirt now; the client never names a target;
  2. `ConsoleAuthPlugin.authenticate(headers, target_host, target_port)` -> Origin, the user's
     session, the console right, then the ticket is consumed (one conditional UPDATE);
  3. `new_websocket_client()` -> connects to the display (`tunnels`: directly, or through its host's
     shared SSH connection), answers its VNC password and its TLS (VeNCrypt) itself when it asks for
     them, relays, and audits the close. `ConsoleWatch` re-checks every open console's session and
     right every few seconds (logout or a revoked grant closes that console).

What the token plugin finds is handed to the auth plugin and the relay through that connection's own
objects only: the server, which every connection shares, keeps nothing of a connection but its place
in the watch. The proxy serves no files: any plain HTTP request gets 405.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import connections
from websockify import auth_plugins, token_plugins
from websockify.auth_plugins import AuthenticationError
from websockify.websocketproxy import LibProxyServer, ProxyRequestHandler

from audit.services import mask
from domains import virt
from vmportal import clients

from . import conf, polling, rfb, services, tunnels
from .services import OpenConsole, PendingConsole, TicketRefused
from .tls import TlsChannel

logger = logging.getLogger(__name__)

TLS_RELAY_STOP_SECONDS = 5  # a console that ends waits this long for its TLS relay thread
CLOSE_ENDED = 4001  # websocket close code: the console was ended by the portal (logout, revoked right)
HANDSHAKE_SECONDS = 10  # a connection that has not completed its websocket upgrade by then is dropped
RELAY_PIPE_BYTES = 1 << 20  # bytes moved from a display to its browser at once (Linux's largest pipe for a user)
RELAY_WAKE_SECONDS = 1.0  # the relay looks at least this often whether its console was ended
LISTEN_BACKLOG = 1024  # hundreds of consoles may open at once (socketserver listens for 5)
_TOKEN_IN_TEXT = re.compile(r"(token=|[Tt]oken ')([A-Za-z0-9_%-]{1,4})[^&\s'\"]*")


class MaskTickets(logging.Filter):
    """Rewrites every `token=...` in a log record to its first four characters (websockify logs paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _TOKEN_IN_TEXT.sub(r"\1\2…", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class ConsoleTokenPlugin(token_plugins.BasePlugin):
    """websockify token plugin: a console ticket -> where its display listens right now.

    One per connection (the handler makes it): what it found belongs to that connection alone.
    """

    def __init__(self, src: str | None = None) -> None:
        super().__init__(src)
        self.client_addr: str | None = None  # set by the handler before the lookup
        self.pending: PendingConsole[virt.GraphicsEndpoint] | None = None

    def lookup(self, token: str) -> tuple[str, int]:
        self.pending = None
        try:
            pending = services.console_ticket_check(token=token, client_addr=self.client_addr)
        except TicketRefused as refusal:
            raise AuthenticationError(log_msg=f"ticket {mask(token)} refused: {refusal}",
                                      response_code=403, response_msg="Console ticket refused") from None
        self.pending = pending
        return _target(pending.endpoint)


class ConsoleAuthPlugin(auth_plugins.BasePlugin):
    """websockify auth plugin: the request must come from an allowed origin, in the ticket user's session (or
    with the API token the ticket was issued to).

    One per connection, with that connection's token plugin.
    """

    def __init__(self, tickets: ConsoleTokenPlugin) -> None:
        super().__init__(None)
        self.tickets = tickets
        self.console: OpenConsole[virt.GraphicsEndpoint] | None = None

    def authenticate(self, headers: Any, target_host: str, target_port: int | str) -> None:
        pending, self.console = self.tickets.pending, None
        if pending is None or (target_host, target_port) != _target(pending.endpoint):
            raise AuthenticationError(log_msg="no checked ticket for this connection", response_code=403,
                                      response_msg="Console refused")
        try:
            self.console = services.console_open(
                pending=pending, origin=headers.get("Origin"), cookie_header=headers.get("Cookie"),
                authorization=headers.get("Authorization"), client_addr=self.tickets.client_addr)
        except TicketRefused as refusal:
            raise AuthenticationError(log_msg=f"console refused: {refusal}", response_code=403,
                                      response_msg="Console refused") from None


def _target(endpoint: virt.GraphicsEndpoint) -> tuple[str, int]:
    """What the token plugin hands the auth plugin: the ticket's endpoint, described.

    Not websockify's ("unix_socket", path): for that it sets no target host, and the auth plugin would
    compare nothing. The handler connects through `tunnels`, never to websockify's target.
    """
    return endpoint.key, 0


class ConsoleRequestHandler(ProxyRequestHandler):
    """websockify's proxy handler for one connection, in its own thread: its own plugins, display auth,
    a relay sized for large screens, the close audited."""

    server: ConsoleProxyServer
    timeout = HANDSHAKE_SECONDS  # socketserver sets it on the socket: a silent client frees its thread

    def setup(self) -> None:
        super().setup()
        self.tickets = ConsoleTokenPlugin()
        self.auth = ConsoleAuthPlugin(self.tickets)
        self.target: tuple[str, int] | None = None
        self.display: socket.socket | None = None
        self.ended_by = ""
        self.opening = True
        self.server.console_opening()

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self._opened()
            connections.close_all()  # this thread's; the next connection's thread opens its own

    def _opened(self) -> None:
        """This connection needs libvirt no more (it relays now, or has ended)."""
        if self.opening:
            self.opening = False
            self.server.console_opened()

    def validate_connection(self) -> None:
        self.tickets.client_addr = self.client_ip()
        token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        try:
            self.target = self.tickets.lookup(token)
        except AuthenticationError as error:
            self.send_auth_error(error)  # a 403 to the browser, as websockify does for auth plugins
            raise

    def auth_connection(self) -> None:
        if self.target is None:  # cannot happen after validate_connection(); refuse rather than guess
            raise AuthenticationError(log_msg="no checked ticket for this connection", response_msg="Console refused")
        try:
            self.auth.authenticate(headers=self.headers, target_host=self.target[0], target_port=self.target[1])
        except AuthenticationError as error:
            self.send_auth_error(error)
            raise
        finally:
            connections.close_all()  # nothing more to ask the database until the console closes

    def client_ip(self) -> str | None:
        """The peer, or the client trusted reverse proxies name in X-Forwarded-For (as the pages read it)."""
        return clients.client_address(peer=str(self.client_address[0]) if self.client_address else None,
                                      forwarded_for=self.headers.get("X-Forwarded-For"))

    def new_websocket_client(self) -> None:
        console = self.auth.console
        if console is None:  # cannot happen after authenticate(); refuse rather than proxy unchecked
            raise self.CClose(1008, "Console refused")
        self.connection.settimeout(None)  # the handshake's deadline is over: a console may idle for hours
        reason = "closed by the browser"
        display = contextlib.ExitStack()
        try:
            try:
                self.display = display.enter_context(self._connect(console))
            except OSError as error:
                reason = f"display unreachable: {error}"
                raise self.CClose(1011, "Failed to connect to the display") from None
            channel = rfb.authenticate_display(self, self.display, console)
            self._opened()
            self.server.watch.add(self, console)
            if channel is None:
                self._relay(self.display)
            else:
                self._relay_through_tls(channel)
        except self.CClose as closing:
            if self.ended_by:
                reason = self.ended_by
                raise self.CClose(CLOSE_ENDED, services.ended_close_reason(reason)) from None
            if closing.args[1:2] == ("Target closed",):
                reason = "display closed"
            raise
        except rfb.DisplayRefused as refusal:
            reason = f"display refused: {refusal}"
            raise self.CClose(1011, "The display refused the connection") from None
        except BaseException as error:
            if self.ended_by and isinstance(error, OSError):  # ended while writing to the display it shut down
                reason = self.ended_by
                raise self.CClose(CLOSE_ENDED, services.ended_close_reason(reason)) from None
            reason = f"proxy stopped ({type(error).__name__})"
            raise
        finally:
            try:
                display.close()
                services.console_close(console, reason=reason)
                connections.close_all()
            finally:
                self.server.watch.remove(self)  # after the audit: a stopping proxy waits for it

    def end(self, reason: str) -> None:
        """Ends the console from another thread (the watch): its relay sees the display close."""
        self.ended_by = reason
        if self.display is not None:
            with contextlib.suppress(OSError):
                self.display.shutdown(socket.SHUT_RDWR)

    def _connect(self, console: OpenConsole[virt.GraphicsEndpoint]) -> contextlib.AbstractContextManager[socket.socket]:
        endpoint = console.endpoint
        self.log_message("connecting %s console of %s to %s", endpoint.kind, console.ticket.domain_name,
                         endpoint.key)
        self.connection.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
        return tunnels.open_display(endpoint)

    def _relay(self, display: socket.socket) -> None:
        """Browser <-> display until either closes or the console is ended.

        websockify's do_proxy, reworked for hundreds of consoles in one process and large screens: poll,
        not select, whose descriptors must stay under 1024; the display's bytes moved to the browser in
        the kernel (`_forward_display`); the sockets block, so a browser slow to take a screen slows its
        display's reads, not the proxy's memory.
        """
        heartbeat = self.server.heartbeat
        next_ping = time.monotonic() + heartbeat if heartbeat else math.inf
        while not self.ended_by:
            wake = min(RELAY_WAKE_SECONDS, next_ping - time.monotonic())
            readable, _ = polling.ready([self.request, display], timeout=max(0.0, wake))
            if self.request in readable:
                frames, closed = self.recv_frames()  # websockify unmasks the browser's frames (numpy)
                if frames:
                    display.sendall(b"".join(frames))
                if closed:
                    raise self.CClose(closed["code"], closed["reason"])
            if display in readable and not self._forward_display(display):
                raise self.CClose(1000, "Target closed")
            if time.monotonic() >= next_ping:
                self.send_ping()
                next_ping = time.monotonic() + heartbeat
        raise self.CClose(CLOSE_ENDED, "Console ended")

    def _forward_display(self, display: socket.socket) -> bool:
        """What the display has sent, to the browser as one binary frame; False once the display has closed.

        The bytes go display -> pipe -> browser with splice(2), never copied through Python: a server's
        frames are not masked, so only the frame's header is ours to write. A blocking socket's splice
        returns what has arrived, without waiting for more once it has some.
        """
        with self.server.pipes.lend() as pipe:
            moved = os.splice(display.fileno(), pipe.write_end, pipe.capacity)
            if not moved:
                return False
            self.connection.sendall(_frame_header(moved), socket.MSG_MORE)  # goes with the payload's first bytes
            while moved:
                moved -= os.splice(pipe.read_end, self.connection.fileno(), moved)
        return True

    def _relay_through_tls(self, channel: TlsChannel) -> None:
        """The relay goes to one end of a socket pair; a thread carries the other end through the TLS session."""
        relayed, display_side = socket.socketpair()
        relay = threading.Thread(target=_relay_and_close, args=(channel, display_side), daemon=True)
        relay.start()
        try:
            self._relay(relayed)
        finally:
            _close_quietly(relayed)  # the relay sees this side close and ends, if the browser went first
            relay.join(TLS_RELAY_STOP_SECONDS)  # before the caller closes the display's socket under it


class _Pipe:
    """A pipe for splice(2), as large as the system lets this user have it."""

    def __init__(self, capacity: int) -> None:
        self.read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # past the user's pipe allowance: the default size
            fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, capacity)
        self.capacity = fcntl.fcntl(self.write_end, fcntl.F_GETPIPE_SZ)

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class SplicePipes:
    """Pipes lent to one display read at a time, each returned empty: a few serve every console.

    A pipe per console would not do: Linux counts pipe capacity per user (64 MiB by default) and gives
    pipes made past that two pages, so the two hundredth console would relay 8 KiB at a time.
    """

    KEEP_IDLE = 8

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._idle: list[_Pipe] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self) -> Iterator[_Pipe]:
        with self._lock:
            pipe = self._idle.pop() if self._idle else None
        pipe = pipe or _Pipe(self.capacity)
        try:
            yield pipe
        except BaseException:
            pipe.close()  # it may still hold a failed console's bytes: never lent again
            raise
        with self._lock:
            if len(self._idle) < self.KEEP_IDLE:
                self._idle.append(pipe)
                return
        pipe.close()


def _frame_header(length: int) -> bytes:
    """RFC 6455 5.2: final, binary, unmasked (a server's frames never are), and the payload's length."""
    if length < 126:
        return struct.pack(">BB", 0x82, length)
    if length < 1 << 16:
        return struct.pack(">BBH", 0x82, 126, length)
    return struct.pack(">BBQ", 0x82, 127, length)


def _relay_and_close(channel: TlsChannel, display_side: socket.socket) -> None:
    try:
        channel.relay(display_side)
    finally:
        _close_quietly(display_side)  # the proxy's relay sees the display close


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class ConsoleWatch:
    """Re-checks every open console's session and right, all in one thread, every re-check interval.

    One thread and one database connection (closed at the end of each round) for the whole proxy, however
    many consoles are open. A console whose user logged out or lost the right is ended; so is one whose
    re-check failed three times in a row (fail closed).
    """

    FAILURES_TO_END = 3

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[ConsoleRequestHandler, tuple[OpenConsole[virt.GraphicsEndpoint], int]] = {}
        self._thread: threading.Thread | None = None

    def add(self, handler: ConsoleRequestHandler, console: OpenConsole[virt.GraphicsEndpoint]) -> None:
        with self._lock:
            self._open[handler] = (console, 0)
            if self._thread is None:  # started by the first console, not by building the server
                self._thread = threading.Thread(target=self._run, name="console-recheck", daemon=True)
                self._thread.start()

    def remove(self, handler: ConsoleRequestHandler) -> None:
        with self._lock:
            self._open.pop(handler, None)

    def handlers(self) -> list[ConsoleRequestHandler]:
        with self._lock:
            return list(self._open)

    def end_all(self, reason: str) -> None:
        for handler in self.handlers():
            handler.end(reason)

    def _recheck(self, handler: ConsoleRequestHandler) -> None:
        with self._lock:
            if handler not in self._open:
                return  # closed meanwhile
            console, failures = self._open[handler]
        try:
            reason = services.console_recheck(console)
            failures = 0
        except Exception:
            failures += 1
            logger.warning("re-checking a console failed", exc_info=True)
            reason = services.RECHECK_FAILED if failures >= self.FAILURES_TO_END else None
        with self._lock:
            if handler in self._open:
                self._open[handler] = (console, failures)
        if reason:
            handler.end(reason)

    def _run(self) -> None:
        """Rounds of one interval each, the consoles' re-checks spread evenly over it: a round's database
        work does not hold the interpreter for a stretch in which every relay waits (their round trips)."""
        interval = conf.recheck_seconds()
        start = time.monotonic()
        while True:
            handlers = self.handlers()
            for turn, handler in enumerate(handlers, start=1):
                time.sleep(max(0.0, start + interval * turn / len(handlers) - time.monotonic()))
                self._recheck(handler)
            connections.close_all()  # no database connection held between rounds
            time.sleep(max(0.0, start + interval - time.monotonic()))  # a round with no console to re-check
            start = max(start + interval, time.monotonic())  # a slow round delays the next, never bunches it


class ConsoleProxyServer(LibProxyServer):
    """websockify's threaded server: one thread per connection in this process, no web root, no TLS (that
    ends at the reverse proxy), our handler, and the watch over every open console."""

    daemon_threads = True  # a stopping proxy ends its consoles itself (`stop`), then exits
    request_queue_size = LISTEN_BACKLOG
    heartbeat: int

    def __init__(self, *, host: str, port: int, heartbeat: int = 30, verbose: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.watch = ConsoleWatch()
        self.pipes = SplicePipes(RELAY_PIPE_BYTES)
        self._opening = 0
        self._opening_lock = threading.Lock()
        super().__init__(RequestHandlerClass=ConsoleRequestHandler, listen_host=host, listen_port=port,
                         heartbeat=heartbeat, verbose=verbose)  # no `web`: it serves no files (SECURITY.md rule 7)

    def console_opening(self) -> None:
        with self._opening_lock:
            self._opening += 1

    def console_opened(self) -> None:
        """The last console to finish opening closes the pooled libvirt connections: a proxy that only relays
        holds no connection to a host (for an SSH host, no login beside its consoles' shared master)."""
        with self._opening_lock:
            self._opening -= 1
            idle = self._opening == 0
        if idle:
            virt.pool.close_all()  # one still in use is closed when its user is done with it

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line per failed connection (through the ticket-masking filter), not a traceback on stderr."""
        error = sys.exc_info()[1]
        logger.info("%s: connection ended: %s", client_address[0] if client_address else "?", error)
        logger.debug("connection failure", exc_info=True)

    def stop(self, reason: str, *, wait: float) -> None:
        """Stops listening and ends every open console (each audits its close), waiting at most wait seconds."""
        self.server_close()
        self.watch.end_all(reason)
        deadline = time.monotonic() + wait
        while self.watch.handlers() and time.monotonic() < deadline:
            time.sleep(0.05)
