"""Content-Security-Policy on every response, from settings.CONTENT_SECURITY_POLICY.

No inline script anywhere (SECURITY.md), so an injected <script> or onclick= does not run even where an
escape was missed. Websockets are the one per-request part: connect-src gets ws: and wss: of the page's
own host (the live-state socket; browsers differ on whether 'self' covers them) and the console proxy's
origin, which settings.CONSOLE_URL may put on another port of that host or on another host.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

HEADER = "Content-Security-Policy"


def _hostname(host: str) -> str:
    """The host name without its port: example.org:8443 gives example.org, [::1]:8000 gives [::1]."""
    if host.endswith("]"):
        return host
    return host.rpartition(":")[0] if ":" in host else host


def websocket_sources(*, host: str, console_url: str) -> list[str]:
    """The websocket origins a page served to `host` connects to."""
    sources = [f"ws://{host}", f"wss://{host}"]
    if console_url.startswith(":"):  # ":PORT/PATH": that port of the page's host
        port = console_url[1:].partition("/")[0]
        sources += [f"ws://{_hostname(host)}:{port}", f"wss://{_hostname(host)}:{port}"]
    elif "://" in console_url:  # a URL of its own
        parts = urlsplit(console_url)
        sources.append(f"{parts.scheme}://{parts.netloc}")
    return list(dict.fromkeys(sources))


def policy_for(request: HttpRequest) -> str:
    directives = {name: list(values) for name, values in settings.CONTENT_SECURITY_POLICY.items()}
    try:
        host = request.get_host()
    except DisallowedHost:  # the 400 for a host we do not serve opens no sockets
        host = ""
    if host:
        sources = websocket_sources(host=host, console_url=str(settings.CONSOLE_URL))
        directives["connect-src"] = [*directives.get("connect-src", ["'self'"]), *sources]
    return "; ".join(" ".join([name, *values]) for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    """Adds the policy to every response that has none (static files included, when placed before WhiteNoise)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = policy_for(request)
        return response
