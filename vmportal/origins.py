"""The one origin check of every websocket: the live-state sockets (daphne) and the console proxy.

A websocket is accepted only from the page's own origin, the same scheme, host and port, or from an
origin listed in CSRF_TRUSTED_ORIGINS (VMPORTAL_CSRF_TRUSTED_ORIGINS), with the rules Django's CSRF
check applies to a form POST. A host name alone is not enough (Channels' AllowedHostsOriginValidator):
another web app on another port of the same host could otherwise read a user's live rows, as browsers
send the portal's cookies to every port of its host.

Where the page's origin comes from:
- a live-state socket: the websocket request itself, read as Django reads an HTTP request (its Host
  must be in ALLOWED_HOSTS; https when its scheme is wss or SECURE_PROXY_SSL_HEADER says so, as behind
  the nginx recipe, which ends TLS and forwards X-Forwarded-Proto);
- a console: the portal page that asked for the ticket (`request_origin` when it is issued), since the
  proxy usually listens on another port than the page and cannot compare with its own Host.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.utils.http import is_same_domain

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normal(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialised origin; None for `null`, paths, credentials or nonsense."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def trusted(origin: str) -> bool:
    """Listed in CSRF_TRUSTED_ORIGINS, exactly or under a `scheme://*.domain` entry, as Django's CSRF check reads it."""
    parsed = _normal(origin)
    if parsed is None:
        return False
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in entry:
            parts = urlsplit(entry)
            if parts.scheme == parsed[0] and is_same_domain(urlsplit(origin).netloc.lower(), parts.netloc.lstrip("*")):
                return True
        elif _normal(entry) == parsed:
            return True
    return False


def origin_allowed(origin: str | None, *, page_origin: str | None) -> bool:
    """Whether a websocket sent with this Origin header may open: the page's own origin, or a trusted one."""
    if not origin:
        return False
    parsed = _normal(origin)
    if parsed is None:
        return False
    if page_origin and _normal(page_origin) == parsed:
        return True
    return trusted(origin)


def request_origin(request: HttpRequest) -> str | None:
    """The origin of the page that made this request, as Django's CSRF check computes it; None for a bad Host."""
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    return f"{request.scheme}://{host}"


class _SocketRequest(HttpRequest):
    """A websocket handshake read as an HTTP request, for Django's own get_host() and scheme rules."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self._socket_scheme = "https" if scope.get("scheme") == "wss" else "http"
        server = scope.get("server")
        if server and server[1] is not None:
            self.META["SERVER_NAME"], self.META["SERVER_PORT"] = str(server[0]), str(server[1])
        for name, value in scope.get("headers", ()):
            key = "HTTP_" + name.decode("latin1").upper().replace("-", "_")
            text = value.decode("latin1")
            self.META[key] = f"{self.META[key]},{text}" if key in self.META else text

    def _get_scheme(self) -> str:
        return self._socket_scheme


def socket_page_origin(scope: Scope) -> str | None:
    """The origin of the page a websocket belongs to: its own scheme and Host, as Django would read them."""
    return request_origin(_SocketRequest(scope))


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin1")
    return None


class SameOriginWebsockets:
    """ASGI middleware: a websocket from any origin but its page's own (or a trusted one) is refused (403)."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "websocket":
            origin = _header(scope.get("headers", ()), b"origin")
            page = socket_page_origin(scope)
            if not origin_allowed(origin, page_origin=page):
                logger.warning("websocket %s refused: origin %r is not its page's (%s)", scope.get("path"), origin,
                               page or "host not allowed")
                await WebsocketDenier()(scope, receive, send)
                return
        await self.application(scope, receive, send)
