"""The console proxy: websockify's WebSocketProxy with our token plugin, auth plugin and request handler.

websockify calls, for each websocket upgrade, in one process forked for that connection:
  1. `ConsoleTokenPlugin.lookup(token)` (the `token` query parameter) -> the live (host, port) of the
     ticket's display, read from libvirt now; the client never names a target;
  2. `ConsoleAuthPlugin.authenticate(headers, target_host, target_port)` -> Origin, the user's
     session, the console right, then the ticket is consumed (one conditional UPDATE);
  3. `ConsoleRequestHandler.new_websocket_client()` -> connects to the display (`tunnels`: directly,
     or through its host's shared SSH connection), answers its VNC password and its TLS (VeNCrypt)
     itself when it asks for them, relays, re-checks session and right every few seconds (logout or a
     revoked grant closes the console), and audits the close.

Because websockify forks one process per connection, what the token plugin found is handed to the
auth plugin and the handler through the plugin objects of that process only.
The proxy serves no files: it is built without `web`, so any plain HTTP request gets 405.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from typing import Any

from django.db import connection as db_connection
from websockify import auth_plugins, token_plugins
from websockify.auth_plugins import AuthenticationError
from websockify.websocketproxy import ProxyRequestHandler, WebSocketProxy

from audit.services import mask
from domains import virt
from vmportal import clients

from . import conf, rfb, services, tunnels
from .services import OpenConsole, PendingConsole, TicketRefused
from .tls import TlsChannel

logger = logging.getLogger(__name__)

TLS_RELAY_STOP_SECONDS = 5  # a console that ends waits this long for its TLS relay thread
CLOSE_ENDED = 4001  # websocket close code: the console was ended by the portal (logout, revoked right)
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
    """websockify token plugin: a console ticket -> where its display listens right now."""

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
    """websockify auth plugin: the request must come from an allowed origin, in the ticket user's session."""

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
                client_addr=self.tickets.client_addr)
        except TicketRefused as refusal:
            raise AuthenticationError(log_msg=f"console refused: {refusal}", response_code=403,
                                      response_msg="Console refused") from None


def _target(endpoint: virt.GraphicsEndpoint) -> tuple[str, int]:
    """What websockify hands from the token plugin to the auth plugin: the ticket's endpoint, described.

    Not websockify's ("unix_socket", path): for that it sets no target host, and the auth plugin would
    compare nothing. The handler connects through `tunnels`, never to websockify's target.
    """
    return endpoint.key, 0


class ConsoleRequestHandler(ProxyRequestHandler):
    """websockify's proxy handler, plus: client address for the audit, display auth, re-checks, close audit."""

    ended_by = ""

    def validate_connection(self) -> None:
        self.server.token_plugin.client_addr = self.client_ip()
        try:
            super().validate_connection()
        except AuthenticationError as error:
            self.send_auth_error(error)  # a 403 to the browser, as websockify does for auth plugins
            raise

    def client_ip(self) -> str | None:
        """The peer, or the client trusted reverse proxies name in X-Forwarded-For (as the pages read it)."""
        return clients.client_address(peer=str(self.client_address[0]) if self.client_address else None,
                                      forwarded_for=self.headers.get("X-Forwarded-For"))

    def new_websocket_client(self) -> None:
        console = self.server.auth_plugin.console
        if console is None:  # cannot happen after authenticate(); refuse rather than proxy unchecked
            raise self.CClose(1008, "Console refused")
        reason = "closed by the browser"
        display = contextlib.ExitStack()
        stop = threading.Event()
        try:
            try:
                target = display.enter_context(self._connect(console))
            except OSError as error:
                reason = f"display unreachable: {error}"
                raise self.CClose(1011, "Failed to connect to the display") from None
            channel = rfb.authenticate_display(self, target, console)
            virt.pool.close_all()  # libvirt is not needed again while relaying: hold no connection to the host
            threading.Thread(target=self._watch, args=(console, target, stop), daemon=True).start()
            if channel is None:
                self.do_proxy(target)
            else:
                self._proxy_through_tls(channel)
        except self.CClose as closing:
            if self.ended_by:
                reason = self.ended_by
                raise self.CClose(CLOSE_ENDED, f"Console ended: {reason}") from None
            if closing.args[1:2] == ("Target closed",):
                reason = "display closed"
            raise
        except rfb.DisplayRefused as refusal:
            reason = f"display refused: {refusal}"
            raise self.CClose(1011, "The display refused the connection") from None
        except BaseException as error:
            reason = f"proxy stopped ({type(error).__name__})"
            raise
        finally:
            stop.set()
            display.close()
            services.console_close(console, reason=reason)
            virt.pool.close_all()
            db_connection.close()

    def _connect(self, console: OpenConsole[virt.GraphicsEndpoint]) -> contextlib.AbstractContextManager[socket.socket]:
        endpoint = console.endpoint
        self.log_message("connecting %s console of %s to %s", endpoint.kind, console.ticket.domain_name,
                         endpoint.key)
        self.request.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
        return tunnels.open_display(endpoint)

    def _proxy_through_tls(self, channel: TlsChannel) -> None:
        """websockify relays to one end of a socket pair; a thread carries the other end through the TLS session."""
        relayed, display_side = socket.socketpair()
        relay = threading.Thread(target=_relay_and_close, args=(channel, display_side), daemon=True)
        relay.start()
        try:
            self.do_proxy(relayed)
        finally:
            _close_quietly(relayed)  # the relay sees this side close and ends, if the browser went first
            relay.join(TLS_RELAY_STOP_SECONDS)  # before the caller closes the display's socket under it

    def _watch(self, console: OpenConsole[virt.GraphicsEndpoint], target: socket.socket, stop: threading.Event) -> None:
        """Ends the console when its user logs out or loses the right; fails closed after repeated errors."""
        failures = 0
        try:
            while not stop.wait(conf.recheck_seconds()):
                try:
                    reason = services.console_recheck(console)
                    failures = 0
                except Exception:
                    failures += 1
                    logger.warning("re-checking a console failed", exc_info=True)
                    reason = "could not re-check the console's right" if failures >= 3 else None
                if reason:
                    self.ended_by = reason
                    with contextlib.suppress(OSError):
                        target.shutdown(socket.SHUT_RDWR)  # the relay loop sees the display close
                    return
        finally:
            db_connection.close()


def _relay_and_close(channel: TlsChannel, display_side: socket.socket) -> None:
    try:
        channel.relay(display_side)
    finally:
        _close_quietly(display_side)  # websockify's loop sees the display close


def _close_quietly(sock: socket.socket, *, shutdown_only: bool = False) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    if not shutdown_only:
        sock.close()


def build_proxy(*, host: str, port: int, verbose: bool = False, heartbeat: int = 30) -> WebSocketProxy:
    """The proxy, ready for `start_server()`: our plugins, no web root, TLS left to the reverse proxy."""
    tickets = ConsoleTokenPlugin()
    return WebSocketProxy(
        RequestHandlerClass=ConsoleRequestHandler,
        listen_host=host,
        listen_port=port,
        token_plugin=tickets,
        auth_plugin=ConsoleAuthPlugin(tickets),
        web="",  # never: the proxy serves no files (SECURITY.md rule 7)
        file_only=True,
        cert="/nonexistent/vmportal-console-proxy.pem",  # TLS ends at the reverse proxy
        heartbeat=heartbeat,
        verbose=verbose,
    )
